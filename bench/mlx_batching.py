"""(c) Batching: aggregate tokens/s with 1, 4 and 8 concurrent streams on one model, paired with raw, in one run.

The small dummy model, greedy, 128 new tokens per stream by default (256 before: halved so that the default run,
bundled BLAS and no peers, stays well under 10 minutes on two cores; prefill, which does not shrink with it, now
weighs more in the aggregate). Every system does exactly the baseline's work: the baseline is mlx-lm's
BatchGenerator in-process (bench/mlx_raw.py) on the same N prompts with the same token limit, and on both sides
EOS ends a sequence as usual (no logits processor anywhere); only prompts whose greedy answer runs to the limit
are used (a raw BatchGenerator probe first), so every stream of both sides generates exactly --tokens tokens. That
is checked stream by stream; the script stops if not. Each prompt serves one round of a system (both sides of it),
so no server answers from a cached prompt.

Aggregate = all tokens of a round / the round's wall time, prefill included (server: the N requests sent at once
until the last stream ends; raw: from inserting the N prompts until the last token). Per N: one warm-up round,
then --rounds measured rounds; within a round the raw side and the server side run one after the other, the side
going first alternating from round to round (the first round's drawn per N, seeded). Ratio = server / raw per
round, then min / median / max. A round in which a request was refused or failed is not compared (it is counted
and recorded). Systems: the gateway (/v1/responses, its defaults: max_batch 8), then in the same run
mlx_lm.server (/v1/chat/completions) and vllm-mlx (continuous batching, /v1/responses) from the peers directory
(`--peers DIR` or $MLXGW_PEERS, reported MISSING otherwise). With --openblas, everything again with those
libraries preloaded. Every round is a JSON line in bench/results/mlx_batching-<UTC time>.jsonl, the printed output
goes to the .txt next to it. Loopback only (127.0.0.1).

    .venv/bin/python bench/mlx_batching.py [--rounds 7] [--tokens 128] [--model small] [--seed 1]
        [--peers DIR | --no-peers] [--openblas LIBS]

Duration on 2 cores with the bundled BLAS: ~7 minutes for the gateway alone (--no-peers), about as much again
per peer; --openblas adds a second, faster pass.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import mlx_common as common

CLIENTS = (1, 4, 8)
HEADERS = ["system", "BLAS", "streams", "rounds", "tokens per stream", "tok/s", "raw BatchGenerator tok/s",
           "ratio to raw", "TTFT ms (median of round)", "refused or failed"]





def runnable_prompts(raw: common.RawWorker, path: Path, tokens: int, wanted: int) -> tuple[list[int], int]:
    """Prompt indices whose greedy answer is `tokens` long in a raw BatchGenerator that stops at EOS, probed 16 at
    a time; at most max(3 × wanted, 64) candidates. Returns (indices, candidates tried)."""
    found: list[int] = []
    index = 1
    limit = max(3 * wanted, 64)
    while len(found) < wanted:
        if index - 1 >= limit:
            raise RuntimeError(f"only {len(found)} of {limit} prompts run to {tokens} tokens on {path.name}")
        batch = list(range(index, index + 16))
        job = {"mode": "batch", "model": str(path), "tokens": tokens, "eos": True, "rounds": [len(batch)],
               "prompts": [common.user_messages(i) for i in batch]}
        counts = raw(job)["rounds"][0]["counts"]
        found += [i for i, n in zip(batch, counts, strict=True) if n == tokens]
        index += 16
    return found[:wanted], index - 1


async def server_round(request: Callable[[int], Awaitable[common.Run]], chosen: list[int]
                       ) -> tuple[float, list[common.Run]]:
    """N streams started together: (wall seconds until the last one ended, their runs)."""
    began = time.perf_counter()
    runs = await asyncio.gather(*(request(index) for index in chosen))
    return time.perf_counter() - began, list(runs)


async def measure(label: str, kind: str, base: str, model: str, raw: common.RawWorker, path: Path, blas: str,
                  prompts: list[int], args: argparse.Namespace, order: random.Random, results: common.Results,
                  ) -> list[list[Any]]:
    rows = []
    offset = 0
    async with common.client(limit=32) as http:
        request = common.requester(http, kind, base, model, args.tokens, failures=True)
        for n in CLIENTS:
            first_side = order.randrange(2)
            tps, raw_tps, ratios, ttfts, bad = [], [], [], [], 0
            for r in range(args.rounds + 1):  # round 0 warms up both sides for this N
                chosen = prompts[offset:offset + n]
                offset += n
                job = {"mode": "batch", "model": str(path), "tokens": args.tokens, "eos": True, "rounds": [n],
                       "prompts": [common.user_messages(i) for i in chosen]}
                raw_first = (r + first_side) % 2 == 0
                if raw_first:
                    base_round = (await asyncio.to_thread(raw, job))["rounds"][0]
                wall, runs = await server_round(request, chosen)
                if not raw_first:
                    base_round = (await asyncio.to_thread(raw, job))["rounds"][0]
                failed = [run for run in runs if run.error]
                bad += len(failed)
                for index, run, count in zip(chosen, runs, base_round["counts"], strict=True):
                    if count != args.tokens:
                        raise RuntimeError(f"raw BatchGenerator ({n} sequences): prompt {index} gave {count} tokens, "
                                           f"the probe {args.tokens}")
                    if not run.error and run.tokens != count:
                        raise RuntimeError(f"{label} ({n} streams): prompt {index} gave {run.tokens} tokens, "
                                           f"raw {count}")
                aggregate = sum(run.tokens for run in runs) / wall
                ttft = common.median([run.ttft for run in runs if not run.error]) * 1000
                compared = r > 0 and not failed
                results.write(kind="round", system=label, blas=blas, streams=n, round=r, warmup=r == 0,
                              raw_first=raw_first, prompts=chosen, tokens=args.tokens, compared=compared,
                              server={"seconds": wall, "aggregate_tps": aggregate, "ttft_ms": ttft,
                                      "tokens": [run.tokens for run in runs], "failed": len(failed),
                                      "errors": [run.error for run in failed][:3]},
                              raw={k: v for k, v in base_round.items() if k != "n"})
                if compared:
                    tps.append(aggregate)
                    raw_tps.append(base_round["aggregate_tps"])
                    ratios.append(aggregate / base_round["aggregate_tps"])
                    ttfts.append(ttft)
            results.write(kind="summary", system=label, blas=blas, streams=n, rounds=len(ratios),
                          tps=common.spread(tps), raw_tps=common.spread(raw_tps), ratio=common.spread(ratios),
                          ttft_ms=common.spread(ttfts), refused_or_failed=bad)
            rows.append([label, blas, n, f"{len(ratios)}/{args.rounds}", args.tokens, common.fmt_spread(tps, 1, 0),
                         common.fmt_spread(raw_tps, 1, 0), common.fmt_spread(ratios), common.fmt_spread(ttfts, 1, 0),
                         bad])
            print(common.table(HEADERS, rows[-1:]).splitlines()[-1], flush=True)
    return rows


def systems(path: Path, blas: common.Blas, args: argparse.Namespace
            ) -> Iterator[tuple[str, str, str, AbstractContextManager[str] | None]]:
    """(label, API kind, model field, server context or None if the system is missing) per system."""
    yield "**gateway**", "responses", "bench", common.gateway({"bench": path}, blas)
    if args.no_peers:
        return
    yield "mlx_lm.server (chat)", "chat", str(path), common.mlx_lm_server(path, blas)
    binary = common.vllm_mlx_binary(common.peers_dir(args.peers))
    yield ("vllm-mlx continuous batching (responses)", "responses", str(path),
           common.vllm_mlx_server(binary, path, blas, "--continuous-batching") if binary else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds per number of streams (after one "
                                                               "warm-up round)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per stream")
    parser.add_argument("--model", default="small")
    parser.add_argument("--seed", type=int, default=1, help="seeds which side goes first")
    parser.add_argument("--openblas", help="colon-separated libraries to preload (libgfortran, libopenblas)")
    parser.add_argument("--peers", help="directory bench/install_peers.sh installed the peers into")
    parser.add_argument("--no-peers", action="store_true", help="measure the gateway alone")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    args = parser.parse_args()
    if args.rounds < 1 or args.tokens < 1:
        parser.error("--rounds and --tokens must be at least 1")
    results = common.Results("mlx_batching", common.public_settings(vars(args)), tee=True)
    try:
        print(f"machine: {common.machine()}")
        print(f"model {args.model}, {args.tokens} new tokens per stream, greedy, EOS as usual on both sides, prompts "
              f"that run to the limit (checked per stream); per N one warm-up round, then {args.rounds} rounds, "
              "server and raw BatchGenerator on the same prompts, the side going first alternating; "
              "median (min–max) over rounds; ratio = server / raw per round.\n", flush=True)
        path = common.build_model(args.model, Path(args.cache))
        order = random.Random(args.seed)
        wanted = sum(CLIENTS) * (args.rounds + 1)
        for blas in common.blas_setups(args.openblas):
            rows: list[list[Any]] = []
            with common.RawWorker(blas) as raw:
                began = time.perf_counter()
                prompts, tried = runnable_prompts(raw, path, args.tokens, wanted)
                results.write(kind="probe", blas=blas.name, tried=tried, kept=prompts)
                print(f"BLAS {blas.name}: {len(prompts)} of {tried} prompts run to {args.tokens} tokens "
                      f"(probe {time.perf_counter() - began:.0f} s)", flush=True)
                for label, kind, model, context in systems(path, blas, args):
                    if context is None:
                        print(common.missing_peer(label, common.peers_dir(args.peers)), flush=True)
                        results.write(kind="missing", system=label, blas=blas.name)
                        continue
                    with context as base:  # every system gets the same prompts, each in a fresh server
                        rows += common.run_async(measure(label, kind, base, model, raw, path, blas.name, prompts,
                                                         args, order, results))
            print(f"\n### BLAS: {blas.name}\n")
            print(common.table(HEADERS, rows), flush=True)
        print(f"\nraw results: {results.path.relative_to(common.ROOT)}")
    finally:
        results.close()


if __name__ == "__main__":
    main()
