"""Run a command inside a fresh network namespace that has only `lo`.

Usage (as root, via `unshare -n`):
    unshare -n python -m tests.e2e.netns_run --port 8080 --socket /tmp/gw.sock -- codex exec ...

Inside the namespace, 127.0.0.1:PORT is relayed to the gateway's Unix socket (a
filesystem object, so it crosses the network boundary); nothing else is reachable,
so whatever the client tries to send elsewhere fails at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _relay(port: int, socket_path: str, ready: threading.Event) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(socket_path)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    ready.set()
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    ready = threading.Event()
    threading.Thread(target=lambda: asyncio.run(_relay(args.port, args.socket, ready)), daemon=True).start()
    if not ready.wait(10):
        print("relay did not start", file=sys.stderr)
        return 97
    try:
        return subprocess.run(command, stdin=subprocess.DEVNULL, timeout=args.timeout, env=os.environ).returncode
    except subprocess.TimeoutExpired:
        print(f"timed out after {args.timeout} s", file=sys.stderr)
        return 124


if __name__ == "__main__":
    sys.exit(main())
