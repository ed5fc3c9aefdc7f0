"""SIGTERM with streams in flight: short ones finish, long ones end with response.failed, the process exits."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.process import GatewayProcess, free_port
from tests.sse import iter_response_events

MANIFEST = """
server: {{port: {port}, shutdown_grace_seconds: 1.5, watch_manifest: false}}
models:
  - name: long
    adapter: scripted
    script: {{delay_ms: 50, chunk_chars: 1, steps: [{{text: "{long}"}}]}}
  - name: short
    adapter: scripted
    script: {{delay_ms: 50, chunk_chars: 1, steps: [{{text: "{short}"}}]}}
"""


def stream(base: str, model: str, events: list[dict], first_delta: threading.Event) -> None:  # type: ignore[type-arg]
    with httpx.Client(timeout=30) as http, http.stream(
        "POST", f"{base}/v1/responses", json={"model": model, "input": "x", "stream": True}
    ) as response:
        for _, event in iter_response_events(response):
            events.append(event)
            if event["type"] == "response.output_text.delta":
                first_delta.set()


def test_sigterm_lets_short_streams_finish_and_fails_long_ones(tmp_path: Path) -> None:
    port = free_port()
    manifest = tmp_path / "gateway.yaml"
    manifest.write_text(MANIFEST.format(port=port, long="x" * 400, short="y" * 24))  # 20 s and 1.2 s of output
    gateway = GatewayProcess(manifest, tmp_path / "gateway.log", port=port)
    with gateway:
        long_events: list[dict] = []  # type: ignore[type-arg]
        short_events: list[dict] = []  # type: ignore[type-arg]
        long_started, short_started = threading.Event(), threading.Event()
        threads = [threading.Thread(target=stream, args=(gateway.base, "long", long_events, long_started)),
                   threading.Thread(target=stream, args=(gateway.base, "short", short_events, short_started))]
        for thread in threads:
            thread.start()
        assert long_started.wait(10) and short_started.wait(10)
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=20)
        ended = time.monotonic() - signalled
        gateway.process.wait(timeout=20)
    assert short_events[-1]["type"] == "response.completed"
    assert short_events[-1]["response"]["output"][0]["content"][0]["text"] == "y" * 24
    failed = long_events[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"]["code"] == "server_shutting_down"
    assert 1.3 < ended < 8, f"streams ended {ended:.1f} s after SIGTERM"
    log = gateway.log()
    assert '"event":"draining"' in log and "Application shutdown complete" in log
