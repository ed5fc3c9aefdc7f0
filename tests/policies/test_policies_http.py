"""Policies end to end: what the model is shown, and how its calls come back through the SSE stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from litestar.testing import TestClient

from gateway.app import create_app
from tests.conftest import make_config
from tests.sse import response_events
from tests.test_routes import assert_envelope

MANIFEST = """
models:
  - name: patcher              # plays the call a model makes to a *wrapped* custom tool
    adapter: scripted
    script:
      chunk_chars: 7
      steps:
        - calls: [{function: apply_patch, arguments: {input: "*** Begin Patch\\n*** Add File: a.txt\\n+hi\\n*** End Patch\\n"}}]
        - text: "patched"
  - name: mcp                  # plays a call to an *expanded* namespace child
    adapter: scripted
    script:
      steps:
        - calls: [{function: docs__search, arguments: {q: "msgspec"}}]
  - name: echo
    adapter: scripted
    script: {mode: echo, chunk_chars: 100000}
policies:
  strict:
    tools: {hosted: reject}
clients:
  - {name: codex, match: {originator: "^codex"}, policy: strict}
"""

APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
               "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch\\n" /(.*\\n)*/ "*** End Patch"'}}
DOCS = {"type": "namespace", "name": "docs", "description": "docs MCP server",
        "tools": [{"type": "function", "name": "search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]}


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    with TestClient(app=create_app(make_config(MANIFEST))) as test_client:
        yield test_client


def echo(client: TestClient, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.post("/v1/responses", json={"model": "echo", **body}, headers=headers or {})
    assert response.status_code == 200, response.text
    return json.loads(response.json()["output"][0]["content"][0]["text"])  # type: ignore[no-any-return]


def test_wrapped_call_comes_back_as_a_custom_tool_call_in_the_stream(client: TestClient) -> None:
    events = response_events(client.post("/v1/responses", json={"model": "patcher", "input": "edit", "stream": True,
                                                                "tools": [APPLY_PATCH]}).text)
    kinds = [e["type"] for e in events]
    assert kinds[2:] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    raw = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"
    assert events[2]["item"]["type"] == "custom_tool_call" and events[2]["item"]["name"] == "apply_patch"
    assert events[4]["input"] == raw and events[5]["item"]["input"] == raw
    assert "function_call" not in json.dumps(events)


def test_expanded_call_comes_back_with_its_namespace(client: TestClient) -> None:
    events = response_events(client.post("/v1/responses", json={"model": "mcp", "input": "find", "stream": True,
                                                                "tools": [DOCS]}).text)
    done = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    assert done["type"] == "function_call" and done["name"] == "search" and done["namespace"] == "docs"
    assert json.loads(done["arguments"]) == {"q": "msgspec"}
    args_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert args_done["name"] == "search"


def test_the_model_sees_wrapped_and_expanded_tools_and_history(client: TestClient) -> None:
    seen = echo(client, {
        "tools": [APPLY_PATCH, DOCS, {"type": "web_search"}],
        "input": [
            {"role": "user", "content": "go"},
            {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "Success"},
            {"type": "function_call", "call_id": "c2", "name": "search", "namespace": "docs", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c2", "output": "hits"},
        ],
    })
    tools = {t["name"]: t for t in seen["tools"]}
    assert set(tools) == {"apply_patch", "docs__search"}
    assert tools["apply_patch"]["parameters"]["required"] == ["input"]
    assert APPLY_PATCH["format"]["definition"] in tools["apply_patch"]["description"]
    system = seen["messages"][0]
    assert system["role"] == "system" and "web_search" in system["content"]
    calls = [m["tool_calls"][0] for m in seen["messages"] if m.get("tool_calls")]
    assert calls[0]["name"] == "apply_patch" and json.loads(calls[0]["arguments"]) == {"input": "*** Begin Patch"}
    assert calls[1]["name"] == "docs__search"
    tool_results = [m for m in seen["messages"] if m["role"] == "tool"]
    assert [m["name"] for m in tool_results] == ["apply_patch", "docs__search"]


def test_tool_choice_none_hides_tools_but_keeps_history_names(client: TestClient) -> None:
    seen = echo(client, {"tools": [APPLY_PATCH], "tool_choice": "none", "input": "x"})
    assert seen["tools"] == [] and seen["tool_choice"] == "none"


def test_client_profile_changes_the_policy_for_matching_headers(client: TestClient) -> None:
    body = {"model": "echo", "input": "x", "tools": [{"type": "web_search"}]}
    assert client.post("/v1/responses", json=body, headers={"user-agent": "opencode/1.18"}).status_code == 200
    rejected = client.post("/v1/responses", json=body, headers={"originator": "codex_exec"})
    error = assert_envelope(rejected, 400, param="tools[0]", code="unsupported_tool")
    assert "'web_search'" in error["message"]


def test_degradations_are_logged_on_the_request_line(client: TestClient) -> None:
    with structlog.testing.capture_logs() as logs:
        response = client.post("/v1/responses", json={"model": "echo", "input": "x", "tools": [APPLY_PATCH, DOCS]})
    # The scripted model cannot hold a call to the grammar tool to its grammar: said too.
    assert response.headers["x-gateway-degraded"] == "tool:apply_patch:wrap, tool:docs:expand, constraint:tools:ignore"
    line = next(entry for entry in logs if entry["event"] == "request")
    assert line["degradations"] == ["tool:apply_patch:wrap", "tool:docs:expand", "constraint:tools:ignore"]


def test_unknown_items_follow_the_item_policy(client: TestClient) -> None:
    seen = echo(client, {"input": [{"type": "compaction", "encrypted_content": "zz"}, {"role": "user", "content": "q"}]})
    assert seen["messages"][0] == {"role": "user", "content": '[compaction] {"encrypted_content":"zz"}'}


def test_readme_policy_example_rejects_image_generation() -> None:
    """The README's own policy block, as written: `names: {image_generation: reject}` answers 400 naming tools[i]."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = next(b for b in readme.split("```yaml\n") if "names: {image_generation: reject}" in b).split("```")[0]
    manifest = "models:\n  - {name: echo, adapter: scripted, script: {mode: echo}}\n" + block
    with TestClient(app=create_app(make_config(manifest))) as test_client:
        body = {"model": "echo", "input": "draw", "tools": [{"type": "web_search"}, {"type": "image_generation"}]}
        response = test_client.post("/v1/responses", json=body)
        assert_envelope(response, 400, param="tools[1]")
        assert "'image_generation'" in response.json()["error"]["message"]
        # the same block drops web_search by type and answers 200 without image_generation
        response = test_client.post("/v1/responses", json={**body, "tools": [{"type": "web_search"}]})
        assert response.status_code == 200 and response.headers["x-gateway-degraded"] == "tool:web_search:drop"
