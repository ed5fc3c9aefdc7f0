"""(d) Isolation: time to first token of model B while model A streams, vs B alone, same run.

Two models in one gateway, each in its own worker (same small dummy weights, separate
processes). B gets short requests (16 tokens, a unique first line each): N alone, then N
while A streams one long answer, then N alone again; the ratio is the median TTFT under
load over the median alone (both "alone" phases pooled).

    .venv/bin/python bench/mlx_isolation.py [--requests 7] [--openblas LIBS]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

import mlx_common as common


async def phase(http: Any, base: str, count: int, offset: int) -> list[float]:
    ttfts = []
    for i in range(count):
        run = await common.stream_responses(http, base, {"model": "b", "input": common.prompt_text(offset + i),
                                                         "temperature": 0, "max_output_tokens": 16, "store": False})
        if run.error:
            raise RuntimeError(run.error)
        ttfts.append(run.ttft)
    return ttfts


async def measure(base: str, count: int) -> tuple[list[float], list[float], common.Run]:
    async with common.client() as http:
        await phase(http, base, 2, 9000)  # warm-up
        alone = await phase(http, base, count, 0)
        body = {"model": "a", "input": common.prompt_text(5000), "temperature": 0, "max_output_tokens": 100_000,
                "store": False}
        long_answer = asyncio.create_task(common.stream_responses(http, base, body))
        await asyncio.sleep(1.0)  # A is past its prefill and decoding
        loaded = await phase(http, base, count, 100)
        assert not long_answer.done(), "A finished before B's requests did; raise max_output_tokens"
        long_answer.cancel()
        await asyncio.gather(long_answer, return_exceptions=True)
        await asyncio.sleep(0.5)
        alone += await phase(http, base, count, 200)
        return alone, loaded, long_answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=7)
    parser.add_argument("--model", default="small")
    parser.add_argument("--openblas", help="colon-separated libraries to preload (libgfortran, libopenblas)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    args = parser.parse_args()
    print(f"machine: {common.machine()}")
    path = common.build_model(args.model, Path(args.cache))
    rows = []
    for blas in common.blas_setups(args.openblas):
        with common.gateway({"a": path, "b": path}, blas, context_length=131072) as base:
            alone, loaded, _ = common.run_async(measure(base, args.requests))
        ratio = common.median(loaded) / common.median(alone)
        rows.append([blas.name, args.model, common.median(alone) * 1000, common.median(loaded) * 1000, ratio,
                     max(loaded) * 1000])
        print(common.table(HEADERS, rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(common.table(HEADERS, rows))


HEADERS = ["BLAS", "model", "B alone TTFT ms (median)", "B while A streams TTFT ms (median)", "ratio",
           "B while A streams, max ms"]

if __name__ == "__main__":
    main()
