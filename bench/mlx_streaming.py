"""(a) Streaming overhead: one client, tokens/s through each server vs mlx-lm in-process, same run.

For the tiny (~1300 tok/s raw) and small (~200 tok/s) dummy models: the gateway
(/v1/responses, SSE, real worker), mlx_lm.server (/v1/chat/completions) and, when
installed, vllm-mlx (/v1/responses; simple and continuous-batching engines). 256 new
tokens, greedy, a unique first line per request, one warm-up then N measured runs.
Each server's runs alternate with raw `mlx_lm.stream_generate` runs (this venv's mlx-lm,
its own process, the same model directory); ratios and TTFT overheads are computed per
pair of neighbouring runs, then the median is taken, so drift of the machine during the
run hits both sides equally.

    .venv/bin/python bench/mlx_streaming.py [--runs 7] [--tokens 256] [--openblas LIBS] [--no-peers]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import mlx_common as common


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value


async def paired(
    label: str, model: str, raw: common.RawWorker, request: Callable[[int], Awaitable[common.Run]], runs: int,
    tokens: int, path: Path, counter: Counter, kind: str,
) -> list[Any]:
    pairs = []
    for i in range(runs + 1):
        job = {"mode": "stream", "model": str(path), "tokens": tokens,
               "prompts": [[{"role": "user", "content": common.prompt_text(counter.next())}]]}
        base = (await asyncio.to_thread(raw, job))["runs"][0]
        run = await request(counter.next())
        if run.error:
            raise RuntimeError(f"{label}: {run.error}")
        if i:
            pairs.append((base, run))
    # Ratios and TTFT differences are taken per pair (two runs next to each other in time), then the median.
    decode_ratio = common.median([r.decode_tps / b["decode_tps"] for b, r in pairs])
    e2e_ratio = common.median([r.e2e_tps / b["e2e_tps"] for b, r in pairs])
    ttft_overhead = common.median([r.ttft - b["ttft"] for b, r in pairs])
    counts = "/".join(str(n) for n in sorted({r.tokens for _, r in pairs}))
    events = round(common.median([r.deltas for _, r in pairs]))
    return [label, model, kind, round(common.median([b["decode_tps"] for b, _ in pairs])),
            round(common.median([r.decode_tps for _, r in pairs])), decode_ratio, e2e_ratio,
            common.median([b["ttft"] for b, _ in pairs]) * 1000, common.median([r.ttft for _, r in pairs]) * 1000,
            ttft_overhead * 1000, counts, events]


def requester(
    http: httpx.AsyncClient, kind: str, base: str, model: str, eos: int, tokens: int
) -> Callable[[int], Awaitable[common.Run]]:
    """One client connection for all of a system's runs (kept alive, as an agent's would be)."""

    async def request(index: int) -> common.Run:
        text = common.prompt_text(index)
        if kind == "responses":
            body = {"model": model, "input": text, "temperature": 0, "max_output_tokens": tokens, "store": False}
            return await common.stream_responses(http, base, body)
        body = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0,
                "max_tokens": tokens, "logit_bias": {str(eos): -1e9}}
        return await common.stream_chat(http, base, body)

    return request


async def measure(label: str, name: str, raw: common.RawWorker, kind: str, base: str, model: str, eos: int,
                  args: argparse.Namespace, path: Path, counter: Counter) -> list[Any]:
    async with common.client() as http:
        request = requester(http, kind, base, model, eos, args.tokens)
        return await paired(label, name, raw, request, args.runs, args.tokens, path, counter, kind)


def systems(path: Path, blas: common.Blas, peers: bool) -> Iterator[tuple[str, str, str, AbstractContextManager[str]]]:
    """(label, API kind, model field, server context) for each system to measure."""
    yield "**gateway**", "responses", "bench", common.gateway({"bench": path}, blas)
    if not peers:
        return
    yield "mlx_lm.server", "chat", str(path), common.mlx_lm_server(path, blas)
    if common.have_vllm_mlx():
        yield "vllm-mlx simple", "responses", str(path), common.vllm_mlx_server(path, blas)
        yield ("vllm-mlx continuous batching", "responses", str(path),
               common.vllm_mlx_server(path, blas, "--continuous-batching"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--models", default="tiny,small")
    parser.add_argument("--openblas", help="colon-separated libraries to preload (libgfortran, libopenblas)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    args = parser.parse_args()
    print(f"machine: {common.machine()}")
    print(f"{args.tokens} new tokens per run, greedy; {args.runs} measured runs per system after a warm-up, each "
          "alternating with a raw stream_generate run; medians. ratio = system / raw.\n")
    counter = Counter()
    for blas in common.blas_setups(args.openblas):
        rows: list[list[Any]] = []
        for name in args.models.split(","):
            path = common.build_model(name, Path(args.cache))
            eos = common.eos_id(path)
            with common.RawWorker(blas) as raw:
                for label, kind, model, context in systems(path, blas, not args.no_peers):
                    with context as base:
                        rows.append(common.run_async(measure(label, name, raw, kind, base, model, eos, args, path,
                                                             counter)))
                    print(common.table(HEADERS, rows[-1:]).splitlines()[-1], flush=True)
        print(f"\n### BLAS: {blas.name}\n")
        print(common.table(HEADERS, rows), flush=True)


HEADERS = ["system", "model", "API", "raw decode tok/s", "decode tok/s", "decode ratio", "e2e ratio", "raw TTFT ms",
           "TTFT ms", "TTFT overhead ms", "tokens", "text events"]

if __name__ == "__main__":
    main()
