"""(d) Isolation: time to first token of model B while model A streams, vs B alone, pair by pair, in one run.

Two models in one gateway, each in its own worker (the same small dummy weights, two processes). A pair is two
requests to B (16 new tokens, greedy, each with its own first line; the two of a pair have prompts of the same
token length, checked, of which the prefix cache can reuse as many tokens, see b_prompts):
- "alone": while nothing else runs (A idle, checked on /health);
- "loaded": while A streams a long answer. A is started, B's request goes out once A has streamed 8 text events
  (A is decoding), and A is stopped, by closing its stream, once B's request is done; the next request waits until
  /health shows A idle. A pair in which A's answer ended before B's did is retried with a new prompt for A
  (recorded; at most 3 attempts per pair).
The order within a pair is drawn at random per pair (seeded). Ratio = loaded TTFT / alone TTFT per pair, then
min / median / max, as for both TTFTs. With --openblas, everything again with those libraries preloaded in each
worker. A worker sets OPENBLAS_NUM_THREADS (and OMP_, MKL_, VECLIB_) to its `threads`: the manifest's per-model
`threads`, which --threads sets for both models, else the gateway's default (cores / models loaded); the threads a
worker got are recorded as /health shows them, when it shows them. Each setup runs with the gateway's
`mlx.first_token_priority` on and off (--priority both, the default), so the effect of pacing the other model while
B waits for its first token is measured in the same run. Every pair is a JSON line in
bench/results/mlx_isolation-<UTC time>.jsonl, the printed output goes to the .txt next to it. Loopback only.

    .venv/bin/python bench/mlx_isolation.py [--pairs 9] [--model small] [--threads N] [--seed 1] [--openblas LIBS]
        [--priority both|on|off]

Duration on 2 cores: about a minute per BLAS setup and priority setting (model build and gateway start included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import mlx_common as common

HEADERS = ["BLAS", "first-token priority", "model", "threads per worker", "pairs", "B alone TTFT ms", "B while A streams TTFT ms",
           "ratio loaded ÷ alone", "A retries"]
B_TOKENS = 16
A_TOKENS = 4096  # far more than A streams before it is stopped (a stop is only a bound)
A_EVENTS = 8  # text events A has streamed before B's request goes out
ATTEMPTS = 3  # per pair, at most (a pair is retried when A's answer ends before B's)
MAX_PAIRS = 13  # b_prompts has 40 attempts' worth of prompts


async def ask_b(http: httpx.AsyncClient, base: str, index: int) -> common.Run:
    run = await common.stream_responses(http, base, {"model": "b", "input": common.prompt_text(index),
                                                     "temperature": 0, "max_output_tokens": B_TOKENS,
                                                     "store": False})
    if run.error:
        raise RuntimeError(f"B: {run.error}")
    if run.first is None:
        raise RuntimeError(f"B: prompt {index} streamed no text")
    return run


async def stream_a(http: httpx.AsyncClient, base: str, index: int, seen: dict[str, Any],
                   decoding: asyncio.Event) -> None:
    """A's long answer; `decoding` is set once A_EVENTS text events have arrived (or A has ended). Counts A's text
    events in `seen`. Runs until cancelled or done."""
    body = {"model": "a", "input": common.prompt_text(index, "-a"), "temperature": 0, "max_output_tokens": A_TOKENS,
            "store": False, "stream": True}
    try:
        async with http.stream("POST", f"{base}/v1/responses", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"A: HTTP {response.status_code}: {(await response.aread())[:300]!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                kind = json.loads(line[6:]).get("type", "")
                if kind.endswith(".delta") and "output_text" in kind:
                    seen["events"] += 1
                    if seen["events"] >= A_EVENTS:
                        decoding.set()
                elif kind in ("response.completed", "response.incomplete", "response.failed"):
                    seen["finished"] = kind
    finally:
        seen["done"] = True
        decoding.set()  # ended early: nobody waits for ever


async def a_idle(http: httpx.AsyncClient, base: str) -> None:
    """Until /health shows no request in A's worker (at most 60 s)."""
    deadline = time.monotonic() + 60
    while (await http.get(f"{base}/health")).json()["models"]["a"]["active"]:
        if time.monotonic() > deadline:
            raise RuntimeError("A's worker still busy 60 s after its stream was closed")
        await asyncio.sleep(0.05)


async def loaded_b(http: httpx.AsyncClient, base: str, index: int, a_index: int
                   ) -> tuple[common.Run | None, dict[str, Any]]:
    """B's request while A streams: (B's run, or None if A ended before B's request could go out; what A did)."""
    seen: dict[str, Any] = {"events": 0, "finished": None, "done": False}
    decoding = asyncio.Event()
    task = asyncio.create_task(stream_a(http, base, a_index, seen, decoding))
    try:
        await asyncio.wait_for(decoding.wait(), timeout=120)
        if seen["done"]:
            task.result()  # raises A's error, if any
            return None, {**seen, "ended_early": True}
        before = seen["events"]
        run = await ask_b(http, base, index)
        return run, {**seen, "events_before_b": before, "ended_early": seen["done"]}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await a_idle(http, base)


def b_prompts(attempt: int) -> tuple[int, int]:
    """B's two prompts of a pair: their first lines differ in three digits (one token each here, so the prompts
    have the same length) and the prefix cache can reuse as much of either: the first digit is one of the pair's
    side's own (odd for one, even for the other), the second one new to that first digit except for the group's
    first pair, so each shares exactly its first digit with an earlier prompt (nothing for a group's first)."""
    group, step = divmod(attempt, 10)
    return 100 * (1 + 2 * group) + 10 * step, 100 * (2 + 2 * group) + 10 * step


async def measure(base: str, blas: str, priority: bool, args: argparse.Namespace, order: random.Random,
                  results: common.Results) -> dict[str, Any]:
    pairs: list[tuple[common.Run, common.Run]] = []
    retries = 0
    async with common.client() as http:
        for index in (900, 901):  # warm-up of B's worker and of the connections (not counted)
            await ask_b(http, base, index)
        await loaded_b(http, base, 903, 902)  # and of A's
        a_index = 0
        for attempt in range(ATTEMPTS * args.pairs):
            if len(pairs) == args.pairs:
                break
            pair = len(pairs)
            alone_index, loaded_index = b_prompts(attempt)
            loaded_first = order.random() < 0.5
            a_index += 1
            if not loaded_first:
                await a_idle(http, base)
                alone = await ask_b(http, base, alone_index)
            loaded, a_seen = await loaded_b(http, base, loaded_index, a_index)
            if loaded_first:
                alone = await ask_b(http, base, alone_index)
            if loaded is None or a_seen["ended_early"]:
                retries += 1
                results.write(kind="retry", blas=blas, first_token_priority=priority, attempt=attempt, a_prompt=a_index, a=a_seen,
                              reason="A's answer ended before B's request did")
                continue
            if alone.prompt_tokens != loaded.prompt_tokens:
                raise RuntimeError(f"B's prompts {alone_index} and {loaded_index} have {alone.prompt_tokens} and "
                                   f"{loaded.prompt_tokens} tokens: a pair must have the same length")
            results.write(kind="pair", blas=blas, first_token_priority=priority, pair=pair, loaded_first=loaded_first, a_prompt=a_index, a=a_seen,
                          ratio=loaded.ttft / alone.ttft,
                          alone={"prompt": alone_index, "ttft": alone.ttft, "prompt_tokens": alone.prompt_tokens,
                                 "tokens": alone.tokens, "cached": alone.cached},
                          loaded={"prompt": loaded_index, "ttft": loaded.ttft, "prompt_tokens": loaded.prompt_tokens,
                                  "tokens": loaded.tokens, "cached": loaded.cached})
            pairs.append((alone, loaded))
        health = (await http.get(f"{base}/health")).json()["models"]
    if len(pairs) < args.pairs:
        raise RuntimeError(f"only {len(pairs)} of {args.pairs} pairs in {ATTEMPTS * args.pairs} attempts: "
                           "A's answers end too early")
    return {"pairs": pairs, "retries": retries, "health": health}


def threads_shown(health: dict[str, Any], args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """What the table says about the workers' threads, and what the JSON line records."""
    shown = {name: health[name].get("threads") for name in ("a", "b")}
    if all(value is not None for value in shown.values()):
        return f"a {shown['a']}, b {shown['b']} (/health)", shown
    if args.threads:
        return f"{args.threads} (--threads)", {"a": args.threads, "b": args.threads, "source": "--threads"}
    return "gateway default (not on /health)", {"a": None, "b": None, "source": "gateway default, not on /health"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", "--requests", type=int, default=9, help="pairs (--requests: the old name)")
    parser.add_argument("--model", default="small")
    parser.add_argument("--threads", type=int, help="each model's `threads` in the manifest (default: the "
                                                    "gateway's, cores / models loaded)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the order within each pair")
    parser.add_argument("--priority", choices=("on", "off", "both"), default="both",
                        help="mlx.first_token_priority in the gateway's manifest; both: one run with each")
    parser.add_argument("--openblas", help="colon-separated libraries to preload (libgfortran, libopenblas)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    args = parser.parse_args()
    if not 1 <= args.pairs <= MAX_PAIRS or (args.threads is not None and args.threads < 1):
        parser.error(f"--pairs must be 1..{MAX_PAIRS}, --threads at least 1")
    results = common.Results("mlx_isolation", common.public_settings(vars(args)), tee=True)
    try:
        print(f"machine: {common.machine()}")
        print(f"model {args.model} twice (a, b), each in its own worker; B: {B_TOKENS} new tokens, greedy; "
              f"{args.pairs} pairs (B alone, B while A streams; order random per pair) after a warm-up; "
              "median (min–max) over pairs; ratio per pair.\n", flush=True)
        path = common.build_model(args.model, Path(args.cache))
        fields = {"threads": args.threads} if args.threads else {}
        order = random.Random(args.seed)
        rows = []
        priorities = {"both": [True, False], "on": [True], "off": [False]}[args.priority]
        for blas, priority in [(b, p) for b in common.blas_setups(args.openblas) for p in priorities]:
            setting = {"first_token_priority": priority}
            with common.gateway({"a": path, "b": path}, blas, setting, **fields) as base:
                out = common.run_async(measure(base, blas.name, priority, args, order, results))
            pairs = out["pairs"]
            threads, recorded = threads_shown(out["health"], args)
            alone = [a.ttft for a, _ in pairs]
            loaded = [b.ttft for _, b in pairs]
            ratios = [b.ttft / a.ttft for a, b in pairs]
            libraries = common.public_settings(vars(args))["openblas"] if blas.libraries else None
            results.write(kind="summary", blas=blas.name, first_token_priority=priority, libraries=libraries,
                          threads=recorded, pairs=len(pairs), retries=out["retries"],
                          alone_ms=common.spread([t * 1000 for t in alone]),
                          loaded_ms=common.spread([t * 1000 for t in loaded]), ratio=common.spread(ratios))
            rows.append([blas.name, "on" if priority else "off", args.model, threads, len(pairs),
                         common.fmt_spread(alone, 1000, 1), common.fmt_spread(loaded, 1000, 1),
                         common.fmt_spread(ratios), out["retries"]])
            print(common.table(HEADERS, rows[-1:]).splitlines()[-1], flush=True)
            uneven = sum(a.cached != b.cached for a, b in pairs)
            if uneven:  # b_prompts makes them equal; the gateway's cache would have to have dropped an entry
                print(f"  note: in {uneven} of {len(pairs)} pairs B's two requests had different cached prefixes "
                      "(see the JSON lines)", flush=True)
        print()
        print(common.table(HEADERS, rows))
        print("\nThe worker sets OPENBLAS_NUM_THREADS (and OMP_, MKL_, VECLIB_) to its threads; with the bundled BLAS "
              "they change nothing.")
        print(f"\nraw results: {results.path.relative_to(common.ROOT)}")
    finally:
        results.close()


if __name__ == "__main__":
    main()
