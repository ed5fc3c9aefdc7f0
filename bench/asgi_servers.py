"""Pick the ASGI server by measurement: uvicorn vs granian serving the same gateway, same run.

Measures (1) streaming: one SSE stream of N one-character deltas, events/s as the client sees them;
(2) small non-stream requests: latency p50/p99 at concurrency 1 and 8. Loopback only.

    .venv/bin/python bench/asgi_servers.py [--deltas 4000] [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MANIFEST = """
models:
  - name: stream
    adapter: scripted
    script: {{chunk_chars: 1, delay_ms: 0.001, steps: [{{text: "{text}"}}]}}  # one write per delta
  - name: small
    adapter: scripted
    script: {{chunk_chars: 64, steps: [{{text: "ok"}}]}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, manifest: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MLXGW_CONFIG": manifest}
    if kind == "uvicorn":
        cmd = [sys.executable, "-m", "gateway", "run", "--config", manifest, "--port", str(port), "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-ws", "gateway.asgi:app"]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{kind} did not start")


async def stream_rate(base: str, rounds: int = 3) -> float:
    rates = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for _ in range(rounds):
            began = time.perf_counter()
            deltas = 0
            async with client.stream("POST", "/v1/responses", json={"model": "stream", "input": "x", "stream": True}) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and '"response.output_text.delta"' in line[:60]:
                        deltas += 1
            rates.append(deltas / (time.perf_counter() - began))
    return statistics.median(rates)


async def latencies(base: str, requests: int, concurrency: int) -> tuple[float, float]:
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        async def worker(n: int) -> None:
            for _ in range(n):
                began = time.perf_counter()
                r = await client.post("/v1/responses", json={"model": "small", "input": "hi"})
                r.raise_for_status()
                samples.append((time.perf_counter() - began) * 1000)
        for _ in range(20):  # warm-up
            await client.post("/v1/responses", json={"model": "small", "input": "hi"})
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deltas", type=int, default=4000)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = str(Path(tmp) / "bench.yaml")
        Path(manifest).write_text(MANIFEST.format(text="x" * args.deltas))
        results = {}
        for kind in ("uvicorn", "granian"):
            port = free_port()
            process = start(kind, manifest, port)
            try:
                base = f"http://127.0.0.1:{port}"
                rate = asyncio.run(stream_rate(base))
                c1 = asyncio.run(latencies(base, args.requests, 1))
                c8 = asyncio.run(latencies(base, args.requests, 8))
                results[kind] = (rate, c1, c8)
            finally:
                process.terminate()
                process.wait(timeout=30)
    print(f"{'server':10} {'stream deltas/s':>16} {'c1 p50 ms':>10} {'c1 p99 ms':>10} {'c8 p50 ms':>10} {'c8 p99 ms':>10}")
    for kind, (rate, c1, c8) in results.items():
        print(f"{kind:10} {rate:16.0f} {c1[0]:10.2f} {c1[1]:10.2f} {c8[0]:10.2f} {c8[1]:10.2f}")
    (u_rate, u_c1, u_c8), (g_rate, g_c1, g_c8) = results["uvicorn"], results["granian"]
    print(f"ratio granian/uvicorn: stream {g_rate / u_rate:.2f}x, c1 p50 latency {g_c1[0] / u_c1[0]:.2f}x, "
          f"c8 p50 latency {g_c8[0] / u_c8[0]:.2f}x")


if __name__ == "__main__":
    main()
