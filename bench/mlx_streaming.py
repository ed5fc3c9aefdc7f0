"""(a) Streaming overhead: one client, each server against mlx-lm in-process, pair by pair, in one run.

For the tiny and small dummy models: the gateway (/v1/responses, SSE, its real worker; once as configured by
default, joining a response's tokens into events at least 50 ms apart, and once with every token its own event),
mlx_lm.server (/v1/chat/completions) and vllm-mlx (/v1/responses, simple and continuous
batching) when installed in the peers directory. Every system does the same work as the
baseline: greedy, EOS handled as usual (no logits processor anywhere), and only prompts
whose greedy answer runs to the token limit (found by a raw probe first), so both sides of
a pair generate the same number of tokens; the script checks that and stops if not.

A pair is one raw `mlx_lm.stream_generate` run and one server run on the same prompt, in
an order drawn at random per pair (seeded); each prompt is used by one pair only, so no
server answers from a cached prompt. All systems of a model are up together and their pairs
interleave: pair k of every system, in an order drawn per k, before any system's pair k + 1, so
no system is always measured first or in a minute of its own. Ratios and TTFT differences are taken per pair, then
min / median / max over the pairs. Every run is written to bench/results/ as a JSON line.

    .venv/bin/python bench/mlx_streaming.py [--pairs 7] [--tokens 256] [--models tiny,small]
        [--peers DIR | --no-peers] [--openblas LIBS] [--seed 1] [--loaded 2]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import mlx_common as common

HEADERS = ["system", "model", "pairs", "tokens", "events", "e2e ratio", "decode ratio", "raw TTFT ms", "TTFT ms",
           "TTFT overhead ms"]





def runnable_prompts(raw: common.RawWorker, path: Path, tokens: int, wanted: int, start: int) -> list[int]:
    """Prompt indices whose greedy answer is `tokens` long (no EOS before the limit): both sides of a pair
    then stream exactly as many tokens. Probed in batches of 8, at most 200 candidates."""
    found: list[int] = []
    index = start
    while len(found) < wanted:
        if index - start >= 200:
            raise RuntimeError(f"only {len(found)} of 200 prompts run to {tokens} tokens on {path.name}")
        batch = list(range(index, index + 8))
        counts = raw({"mode": "probe", "model": str(path), "tokens": tokens,
                      "prompts": [common.user_messages(i) for i in batch]})["tokens"]
        found += [i for i, n in zip(batch, counts, strict=True) if n == tokens]
        index += 8
    return found[:wanted]


class System:
    """One server under test, with its own prompts (no server answers from a cached prompt) and its pairs so far."""

    def __init__(self, label: str, kind: str, model: str, base: str, prompts: list[int]) -> None:
        self.label, self.kind, self.model, self.base, self.prompts = label, kind, model, base, prompts
        self.pairs: list[tuple[dict[str, Any], common.Run]] = []


async def measure(name: str, members: list[System], raw: common.RawWorker, path: Path, args: argparse.Namespace,
                  order: random.Random, results: common.Results) -> list[list[Any]]:
    """All systems' pairs interleaved: pair k of every system, in an order drawn per k, before pair k + 1 of any, so
    a slow minute of the machine falls on every system alike (one server busy at a time; the others idle)."""
    async with common.client() as http:
        requests = {m.label: common.requester(http, m.kind, m.base, m.model, args.tokens) for m in members}
        for member in members:
            warm = await requests[member.label](member.prompts[0])  # warm-up of each server and connection
            if warm.error:
                raise RuntimeError(f"{member.label}: {warm.error}")
        await asyncio.to_thread(raw, {"mode": "stream", "model": str(path), "tokens": 8,
                                      "prompts": [common.user_messages(0)]})
        for pair in range(args.pairs):
            for member in order.sample(members, len(members)):
                index = member.prompts[1 + pair]
                job = {"mode": "stream", "model": str(path), "tokens": args.tokens,
                       "prompts": [common.user_messages(index)]}
                raw_first = order.random() < 0.5
                if raw_first:
                    base_run = (await asyncio.to_thread(raw, job))["runs"][0]
                run = await requests[member.label](index)
                if not raw_first:
                    base_run = (await asyncio.to_thread(raw, job))["runs"][0]
                if run.error:
                    raise RuntimeError(f"{member.label}: {run.error}")
                if run.tokens != base_run["tokens"]:
                    raise RuntimeError(f"{member.label}: prompt {index} gave {run.tokens} tokens, "
                                       f"raw {base_run['tokens']}")
                results.write(kind="pair", system=member.label, model=name, pair=pair, prompt=index,
                              raw_first=raw_first, tokens=run.tokens,
                              raw={k: v for k, v in base_run.items() if k != "text"},
                              server={"ttft": run.ttft, "decode_tps": run.decode_tps, "e2e_tps": run.e2e_tps,
                                      "events": run.deltas, "prompt_tokens": run.prompt_tokens})
                member.pairs.append((base_run, run))
    return [summary(name, member, results) for member in members]


def summary(name: str, member: System, results: common.Results) -> list[Any]:
    pairs = member.pairs
    e2e = [r.e2e_tps / b["e2e_tps"] for b, r in pairs]
    decode = [r.decode_tps / b["decode_tps"] for b, r in pairs]
    overhead = [r.ttft - b["ttft"] for b, r in pairs]
    spreads = {"e2e_ratio": common.spread(e2e), "decode_ratio": common.spread(decode),
               "raw_ttft_ms": common.spread([b["ttft"] * 1000 for b, _ in pairs]),
               "ttft_ms": common.spread([r.ttft * 1000 for _, r in pairs]),
               "ttft_overhead_ms": common.spread([o * 1000 for o in overhead])}
    results.write(kind="summary", system=member.label, model=name, pairs=len(pairs), **spreads)
    events = statistics.median(r.deltas for _, r in pairs)
    return [member.label, name, len(pairs), pairs[0][1].tokens, f"{events:g}", common.fmt_spread(e2e),
            common.fmt_spread(decode), common.fmt_spread([b["ttft"] for b, _ in pairs], 1000, 1),
            common.fmt_spread([r.ttft for _, r in pairs], 1000, 1), common.fmt_spread(overhead, 1000, 1)]


def systems(path: Path, blas: common.Blas, args: argparse.Namespace
            ) -> Iterator[tuple[str, str, str, AbstractContextManager[str] | None]]:
    """(label, API kind, model field, server context or None if the system is missing) per system."""
    # The gateway as it is used: two models loaded (the second, idle, is the same weights in its own worker).
    loaded = {"bench": path, "idle": path} if args.loaded == 2 else {"bench": path}
    yield "**gateway**", "responses", "bench", common.gateway(loaded, blas)
    # The same with every token its own SSE event (its default joins a response's tokens into events 50 ms apart).
    yield "gateway, stream_interval_ms: 0", "responses", "bench", common.gateway(loaded, blas, stream_interval_ms=0)
    if args.no_peers:
        return
    yield "mlx_lm.server", "chat", str(path), common.mlx_lm_server(path, blas)
    binary = common.vllm_mlx_binary(common.peers_dir(args.peers))
    yield ("vllm-mlx simple", "responses", str(path),
           common.vllm_mlx_server(binary, path, blas) if binary else None)
    yield ("vllm-mlx continuous batching", "responses", str(path),
           common.vllm_mlx_server(binary, path, blas, "--continuous-batching") if binary else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--models", default="tiny,small")
    parser.add_argument("--openblas", help="colon-separated libraries to preload (libgfortran, libopenblas)")
    parser.add_argument("--peers", help="directory bench/install_peers.sh installed the peers into")
    parser.add_argument("--no-peers", action="store_true", help="measure the gateway alone")
    parser.add_argument("--seed", type=int, default=1, help="seeds the order within each pair")
    parser.add_argument("--loaded", type=int, choices=(1, 2), default=2, help="models the gateway has loaded")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    args = parser.parse_args()
    results = common.Results("mlx_streaming", common.public_settings(vars(args)), tee=True)
    print(f"machine: {common.machine()}")
    print(f"{args.tokens} new tokens per run, greedy, EOS as usual, prompts that run to the limit; {args.pairs} pairs "
          "per system after a warm-up, order random per pair; min–max in brackets; ratio = system / raw.\n")
    order = random.Random(args.seed)
    for blas in common.blas_setups(args.openblas):
        rows: list[list[Any]] = []
        for name in args.models.split(","):
            path = common.build_model(name, Path(args.cache))
            with common.RawWorker(blas) as raw, ExitStack() as servers:
                members: list[System] = []
                start = 1
                for label, kind, model, context in systems(path, blas, args):
                    if context is None:
                        print(common.missing_peer(label, common.peers_dir(args.peers)), flush=True)
                        results.write(kind="missing", system=label, model=name)
                        continue
                    prompts = runnable_prompts(raw, path, args.tokens, args.pairs + 1, start)
                    start = prompts[-1] + 1  # every system gets prompts of its own
                    members.append(System(label, kind, model, servers.enter_context(context), prompts))
                model_rows = common.run_async(measure(name, members, raw, path, args, order, results))
                rows += model_rows
                print(common.table(HEADERS, model_rows), flush=True)
        print(f"\n### BLAS: {blas.name}\n")
        print(common.table(HEADERS, rows), flush=True)
    results.close()
    print(f"\nraw results: {results.path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
