"""A minimal MCP server over stdio (JSON-RPC 2.0, one message per line) for the e2e tests.

It offers one tool, `write_marker`, which appends its `text` argument to the file
named by $MARKER_FILE: the file on disk proves the client called the right tool
of the right server with the right arguments.
"""

from __future__ import annotations

import json
import os
import sys

TOOL = {
    "name": "write_marker",
    "description": "Append a line of text to the marker file.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


def answer(request: dict) -> dict | None:  # type: ignore[type-arg]
    method = request.get("method")
    if "id" not in request:
        return None  # a notification
    if method == "initialize":
        version = request.get("params", {}).get("protocolVersion", "2025-06-18")
        result = {"protocolVersion": version, "capabilities": {"tools": {}},
                  "serverInfo": {"name": "marker", "version": "1.0.0"}}
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        params = request.get("params", {})
        if params.get("name") != "write_marker":
            return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32602, "message": "unknown tool"}}
        text = str(params.get("arguments", {}).get("text", ""))
        with open(os.environ["MARKER_FILE"], "a") as marker:
            marker.write(text + "\n")
        result = {"content": [{"type": "text", "text": f"wrote {text!r}"}], "isError": False}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": f"no method {method}"}}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        response = answer(json.loads(line))
        if response is not None:
            sys.stdout.write(json.dumps(response) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
