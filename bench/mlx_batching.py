"""(c) Batching: aggregate tokens/s with 1, 4 and 8 concurrent streams on one model, same run.

The small dummy model, 256 new tokens per stream, greedy, every stream with its own first
line. Aggregate = all tokens of a round / the round's wall time (prefill included).
Baseline: mlx-lm's BatchGenerator in-process with the same number of sequences, its
rounds alternating with the server's. Then mlx_lm.server (chat) and vllm-mlx
(continuous batching, /v1/responses) when installed. With `--openblas`, everything is
measured again with Debian's OpenBLAS preloaded. Median of N rounds after a warm-up.

    .venv/bin/python bench/mlx_batching.py [--rounds 3] [--openblas LIBS] [--no-peers]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import mlx_common as common

CLIENTS = (1, 4, 8)


async def round_of(n: int, request: Callable[[int], Awaitable[common.Run]], first: int) -> tuple[float, int, int]:
    """(aggregate tok/s, requests refused or failed, median TTFT ms) of n streams started together."""
    began = time.perf_counter()
    runs = await asyncio.gather(*(request(first + i) for i in range(n)))
    wall = time.perf_counter() - began
    bad = sum(1 for r in runs if r.error)
    return sum(r.tokens for r in runs) / wall, bad, common.median([r.ttft for r in runs]) * 1000


def requester(http: httpx.AsyncClient, kind: str, base: str, model: str, eos: int, tokens: int, salt: str
              ) -> Callable[[int], Awaitable[common.Run]]:
    async def request(index: int) -> common.Run:
        text = common.prompt_text(index, salt)
        if kind == "responses":
            body = {"model": model, "input": text, "temperature": 0, "max_output_tokens": tokens, "store": False}
            return await common.stream_responses(http, base, body)
        body = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0,
                "max_tokens": tokens}
        return await common.stream_chat(http, base, body)

    return request


async def measure(raw: common.RawWorker, path: Path, request: Callable[[int], Awaitable[common.Run]],
                  rounds: int, tokens: int) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    index = 0
    for n in CLIENTS:
        raw_tps, tps, ttft, bad = [], [], [], 0
        for r in range(rounds + 1):
            prompts = [[{"role": "user", "content": common.prompt_text(10_000 + index + i)}] for i in range(n)]
            job = {"mode": "batch", "model": str(path), "tokens": tokens, "prompts": prompts, "rounds": [n]}
            base = (await asyncio.to_thread(raw, job))["rounds"][0]["aggregate_tps"]
            aggregate, refused, first = await round_of(n, request, index)
            index += n
            bad += refused
            if r:
                raw_tps.append(base)
                tps.append(aggregate)
                ttft.append(first)
        out[n] = {"raw": common.median(raw_tps), "tps": common.median(tps), "ttft": common.median(ttft), "bad": bad,
                  "ratio": common.median([a / b for a, b in zip(tps, raw_tps, strict=True)])}
    return out


async def system(raw: common.RawWorker, path: Path, kind: str, base: str, model: str, eos: int,
                 args: argparse.Namespace, salt: str) -> dict[int, dict[str, Any]]:
    async with common.client(limit=32) as http:
        request = requester(http, kind, base, model, eos, args.tokens, salt)
        return await measure(raw, path, request, args.rounds, args.tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--model", default="small")
    parser.add_argument("--openblas", help="colon-separated libraries to preload (libgfortran, libopenblas)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--peers", help="directory bench/install_peers.sh installed the peers into")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    args = parser.parse_args()
    print(f"machine: {common.machine()}")
    print(f"model {args.model}, {args.tokens} tokens per stream; median of {args.rounds} rounds after a warm-up; "
          "each round alternates with a raw BatchGenerator round of the same size.\n")
    path = common.build_model(args.model, Path(args.cache))
    eos = common.eos_id(path)
    headers = ["system", "BLAS", *(f"{n} streams tok/s" for n in CLIENTS), "8 vs 1", "raw BatchGenerator 1/4/8",
               "ratio to raw at 8", "TTFT ms at 8", "refused or failed"]
    for blas in common.blas_setups(args.openblas):
        rows = []
        systems: list[tuple[str, str, str, Any]] = [("**gateway**", "responses", "bench",
                                                     lambda b=blas: common.gateway({"bench": path}, b))]
        if not args.no_peers:
            systems.append(("mlx_lm.server (chat)", "chat", str(path), lambda b=blas: common.mlx_lm_server(path, b)))
            binary = common.vllm_mlx_binary(common.peers_dir(args.peers))
            if binary is not None:
                systems.append(("vllm-mlx continuous batching (responses)", "responses", str(path),
                                lambda b=blas, v=binary: common.vllm_mlx_server(v, path, b, "--continuous-batching")))
            else:
                print(common.missing_peer("vllm-mlx", common.peers_dir(args.peers)), flush=True)
        with common.RawWorker(blas) as raw:
            for label, kind, model, start in systems:
                try:
                    with start() as base:
                        result = common.run_async(system(raw, path, kind, base, model, eos, args, f"-{label[:6]}"))
                except Exception as exc:
                    print(f"{label}: failed: {type(exc).__name__}: {exc}", flush=True)
                    continue
                rows.append([label, blas.name, *(result[n]["tps"] for n in CLIENTS),
                             f"{result[8]['tps'] / result[1]['tps']:.2f}x",
                             " / ".join(f"{result[n]['raw']:.0f}" for n in CLIENTS), result[8]["ratio"],
                             result[8]["ttft"], sum(result[n]["bad"] for n in CLIENTS)])
                print(common.table(headers, rows[-1:]).splitlines()[-1], flush=True)
        print(f"\n### BLAS: {blas.name}\n")
        print(common.table(headers, rows), flush=True)


if __name__ == "__main__":
    main()
