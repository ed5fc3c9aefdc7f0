"""(b) Agent session: a 10-turn Codex-shaped conversation, full history resent every turn, paired with its ideal.

The "pc" dummy model (~22 M params: prefill dominates). Codex-shaped: long instructions (~1,300 tokens) and a
short task, then every turn appends the model's 16-token answer (as the client received it: Codex echoes its
output items) and a ~120-token tool output, the whole history resent (store false, prompt_cache_key), so the
prompt grows to ~2,500 tokens by turn 10. Every session is salted at its first token, so sessions share nothing.

Baseline, the ideal: the same session in-process (bench/mlx_raw.py, mode session): at every turn what the previous
turn left in the KV cache (its prompt and its greedy answer) is reused where the new prompt still matches it, only
the rest is computed, then the first text. A pair is one server session and one in-process session on the same
conversation (same salt), in an order drawn at random per pair (seeded). Both sides decode greedily with EOS as
usual (no logits processor anywhere) and only sessions whose every answer runs to --answer tokens are kept: a
pair whose in-process session meets an EOS earlier is skipped (recorded; a new salt is drawn, at most 2 × the
pairs in all). In a kept pair the server's answer on every turn must have the same number of tokens, and its
prompt the same number of tokens, as the in-process one (the script stops if not). Ratios (server TTFT ÷ ideal
TTFT) are taken per pair and turn, then min / median / max; cached tokens are as the server reports them.

Systems: the gateway (/v1/responses, store false, prompt_cache_key), with --openblas and --no-cache-run also the
gateway with its prefix cache off, then in the same run mlx_lm.server (/v1/chat/completions, its prompt cache on)
and vllm-mlx (continuous batching, /v1/responses) from the peers directory (`--peers DIR` or $MLXGW_PEERS,
reported MISSING otherwise). Every pair is a JSON line in bench/results/mlx_session-<UTC time>.jsonl (every turn
of both sides), the printed output goes to the .txt next to it. Loopback only (127.0.0.1).

    .venv/bin/python bench/mlx_session.py [--repeats 5] [--turns 10] [--answer 16] [--seed 1]
        [--peers DIR | --no-peers] [--openblas LIBS [--only-openblas] [--no-cache-run]]

--repeats is the number of pairs per system: 5 by default, not 7, because with the bundled BLAS one session takes
55–80 s on 2 cores (the first turn's ~1,300-token prefill alone 23–33 s) and a pair is two of them: ~10–14
minutes for the gateway alone (--no-peers), about as much again per peer; 7 pairs take ~14–19 minutes.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import mlx_common as common

WORDS = ("file", "test", "error", "build", "patch", "module", "function", "return", "value", "worker", "stream",
         "request", "cache", "token", "model", "server", "client", "result", "change", "review")
ATTEMPTS = 2  # sessions tried per pair, at most (a session with an early EOS is skipped)
PROMPT_SLACK = 8  # tokens (or 2 %) a peer's own rendering of a turn's prompt may differ from the in-process one


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def conversation(salt: str, turns: int) -> tuple[str, list[str]]:
    """(instructions, user turns). Like Codex: long instructions (~1,400 tokens, tools described in them), then
    short turns (~110 tokens each: a tool's output or a user remark); the salt makes every session unique."""
    rng = random.Random(7)
    instructions = f"Session {salt}. You are a coding agent running in a terminal. " + " ".join(
        f"Rule {i}: {words(rng, 60)}." for i in range(12))
    users = [f"Task: {words(rng, 55)}.", *(f"Output of step {t}: {words(rng, 62)}." for t in range(2, turns + 1))]
    return instructions, users


async def session(kind: str, base: str, model: str, instructions: str, users: list[str], answer: int,
                  key: str | None) -> tuple[list[common.Run], list[str]]:
    """Run every turn: (each turn's run, each turn's answer text as the client received it)."""
    runs: list[common.Run] = []
    texts: list[str] = []
    items: list[dict[str, Any]] = [{"type": "message", "role": "developer", "content": instructions}]
    messages: list[dict[str, str]] = [{"role": "system", "content": instructions}]
    async with common.client() as http:
        for user in users:
            items.append({"type": "message", "role": "user", "content": user})
            messages.append({"role": "user", "content": user})
            if kind == "responses":
                body: dict[str, Any] = {"model": model, "input": items, "temperature": 0, "max_output_tokens": answer,
                                        "store": False}
                if key:
                    body["prompt_cache_key"] = key
                run = await common.stream_responses(http, base, body)
                items = items + [item for item in run.output if item.get("type") == "message"]
                text = "".join(part.get("text", "") for item in run.output if item.get("type") == "message"
                               for part in item.get("content", []))
            else:
                body = {"model": model, "messages": messages, "temperature": 0, "max_tokens": answer}
                run = await common.stream_chat(http, base, body)
                text = run.output[0] if run.output else ""
            if run.error:
                raise RuntimeError(f"{base}: {run.error}")
            messages.append({"role": "assistant", "content": text})
            runs.append(run)
            texts.append(text)
    return runs, texts


def systems(path: Path, blas: common.Blas, args: argparse.Namespace
            ) -> Iterator[tuple[str, str, str, str | None, AbstractContextManager[str] | None]]:
    """(label, API kind, model field, prompt_cache_key prefix, server context or None if missing) per system."""
    yield "**gateway**", "responses", "bench", "thread", common.gateway({"bench": path}, blas)
    if args.no_cache_run and blas.libraries:  # minutes per session with the bundled BLAS: OpenBLAS only
        yield ("gateway, prefix cache off", "responses", "bench", "thread",
               common.gateway({"bench": path}, blas, prefix_cache_mb=0))
    if args.no_peers:
        return
    yield "mlx_lm.server (chat)", "chat", str(path), None, common.mlx_lm_server(path, blas)
    binary = common.vllm_mlx_binary(common.peers_dir(args.peers))
    yield ("vllm-mlx continuous batching (responses)", "responses", str(path), None,
           common.vllm_mlx_server(binary, path, blas, "--continuous-batching") if binary else None)


def measure(label: str, kind: str, base: str, model: str, key: str | None, raw: common.RawWorker, path: Path,
            blas: str, salt: str, args: argparse.Namespace, order: random.Random, results: common.Results,
            ) -> list[dict[str, Any]]:
    """The system's pairs: [{"server": [Run per turn], "raw": [turn dict per turn]}, ...]."""
    def ideal(instructions: str, users: list[str]) -> list[dict[str, Any]]:
        job = {"mode": "session", "model": str(path), "system": instructions, "users": users, "answer": args.answer}
        return list(raw(job)["turns"])

    # Warm-up of both sides on a short conversation (the same code paths: a cache reused from turn to turn).
    warm_users = ["Task: say hello.", "Output of step 2: hello."]
    ideal("Warm-up.", warm_users)
    common.run_async(session(kind, base, model, "Warm-up.", warm_users, 4, f"{key}-warm" if key else None))
    pairs: list[dict[str, Any]] = []
    for attempt in range(ATTEMPTS * args.repeats):
        if len(pairs) == args.repeats:
            break
        name = f"{salt}-{attempt:02d}"  # the same length for every system: comparable prompt sizes
        instructions, users = conversation(name, args.turns)
        raw_first = order.random() < 0.5
        if raw_first:
            raw_turns = ideal(instructions, users)
        runs, texts = common.run_async(session(kind, base, model, instructions, users, args.answer,
                                               f"{key}-{attempt}" if key else None))
        if not raw_first:
            raw_turns = ideal(instructions, users)
        turns = [{"server": {"ttft": run.ttft, "prompt_tokens": run.prompt_tokens, "cached": run.cached,
                             "tokens": run.tokens},
                  "raw": {k: v for k, v in turn.items() if k != "text"}, "same_text": text == turn["text"]}
                 for run, text, turn in zip(runs, texts, raw_turns, strict=True)]
        if any(turn["tokens"] != args.answer for turn in raw_turns):  # an EOS before the limit: not this salt
            results.write(kind="skipped", system=label, blas=blas, attempt=attempt, salt=name, raw_first=raw_first,
                          reason="an in-process answer ended before --answer tokens", turns=turns)
            print(f"{label}: session {attempt} skipped (an answer ended at EOS before {args.answer} tokens)",
                  flush=True)
            continue
        for t, (run, turn) in enumerate(zip(runs, raw_turns, strict=True), 1):
            # The answer must be the same work. A peer renders the same conversation with its own code, so its
            # prompt may differ by a few tokens from the in-process one (the gateway's may not): shown, not fatal.
            prompt_off = abs(run.prompt_tokens - turn["prompt_tokens"])
            ours = label.strip("*").startswith("gateway")
            slack = max(PROMPT_SLACK, turn["prompt_tokens"] // 50)
            if run.tokens != turn["tokens"] or (prompt_off and (ours or prompt_off > slack)):
                raise RuntimeError(f"{label}, session {attempt}, turn {t}: the server's answer has {run.tokens} tokens "
                                   f"and its prompt {run.prompt_tokens}; in-process {turn['tokens']} and "
                                   f"{turn['prompt_tokens']}: not the same work")
        if any(r.prompt_tokens != t["prompt_tokens"] for r, t in zip(runs, raw_turns, strict=True)):
            print(f"{label}: session {attempt}: its prompts differ from the in-process ones by "
                  + ", ".join(str(r.prompt_tokens - t["prompt_tokens"]) for r, t in zip(runs, raw_turns, strict=True))
                  + " tokens (its own rendering of the same conversation)", flush=True)
        results.write(kind="pair", system=label, blas=blas, pair=len(pairs), attempt=attempt, salt=name,
                      raw_first=raw_first, turns=turns,
                      ratio_last=runs[-1].ttft / raw_turns[-1]["ttft"])
        pairs.append({"server": runs, "raw": raw_turns})
        print(f"{label}: server " + " ".join(f"{r.ttft:.2f}" for r in runs) + " | ideal "
              + " ".join(f"{t['ttft']:.2f}" for t in raw_turns), flush=True)
    if len(pairs) < args.repeats:
        raise RuntimeError(f"{label}: only {len(pairs)} of {args.repeats} sessions ran to {args.answer} tokens on "
                           f"every turn in {ATTEMPTS * args.repeats} attempts")
    return pairs


def cached_shares(pairs: list[dict[str, Any]], turn: int) -> list[float]:
    """The server's cached tokens ÷ its prompt tokens on `turn` (0-based), one per pair."""
    return [pair["server"][turn].cached / pair["server"][turn].prompt_tokens for pair in pairs
            if pair["server"][turn].prompt_tokens]


def report(blas: str, measured: list[tuple[str, list[dict[str, Any]]]], args: argparse.Namespace,
           results: common.Results) -> None:
    n = args.turns
    headers = ["system", "pairs", "TTFT turn 1 s", f"TTFT turn {n} s", f"ideal turn {n} s", f"turn {n} ÷ ideal",
               f"prompt tokens turn {n}", f"cached turn {n}", f"min cached share turns 2..{n}", "sum of TTFTs s",
               "sum ÷ ideal sum"]
    rows, per_turn = [], []
    for label, pairs in measured:
        server = [[run.ttft for run in pair["server"]] for pair in pairs]
        ideal = [[turn["ttft"] for turn in pair["raw"]] for pair in pairs]
        last = [s[-1] / i[-1] for s, i in zip(server, ideal, strict=True)]
        sums = [sum(s) / sum(i) for s, i in zip(server, ideal, strict=True)]
        shares = [run.cached / run.prompt_tokens for pair in pairs for run in pair["server"][1:] if run.prompt_tokens]
        cached_last = [pair["server"][-1].cached for pair in pairs]
        rows.append([label, len(pairs), common.fmt_spread([s[0] for s in server]),
                     common.fmt_spread([s[-1] for s in server]), common.fmt_spread([i[-1] for i in ideal]),
                     common.fmt_spread(last), pairs[0]["server"][-1].prompt_tokens,
                     common.fmt_spread(cached_last, 1, 0), f"{min(shares):.1%}" if shares else "–",
                     common.fmt_spread([sum(s) for s in server]), common.fmt_spread(sums)])
        results.write(kind="summary", system=label, blas=blas, pairs=len(pairs),
                      ttft=[common.spread([s[t] for s in server]) for t in range(n)],
                      ideal=[common.spread([i[t] for i in ideal]) for t in range(n)],
                      ratio=[common.spread([s[t] / i[t] for s, i in zip(server, ideal, strict=True)])
                             for t in range(n)],
                      cached_share=[common.spread(cached_shares(pairs, t)) for t in range(n)],
                      ratio_sum=common.spread(sums), min_cached_share=min(shares) if shares else None)
        per_turn += [
            [f"{label} TTFT s", *(common.fmt_spread([s[t] for s in server]) for t in range(n))],
            [f"{label} ideal s", *(common.fmt_spread([i[t] for i in ideal]) for t in range(n))],
            [f"{label} ÷ ideal", *(common.fmt_spread([s[t] / i[t] for s, i in zip(server, ideal, strict=True)])
                                   for t in range(n))],
            [f"{label} cached share", *(f"{common.median(cached_shares(pairs, t)):.1%}" for t in range(n))],
        ]
    print(f"\n### BLAS: {blas}\n")
    print(common.table(headers, rows))
    first = measured[0][1][0]
    turns = [["prompt tokens", *(run.prompt_tokens for run in first["server"])],
             ["ideal: reused from the previous turn", *(turn["prefix_tokens"] for turn in first["raw"])],
             *per_turn]
    print(f"\nPer turn, median (min–max) over pairs; prompt tokens and reuse of {measured[0][0]}'s first pair:\n")
    print(common.table(["turn", *(str(t) for t in range(1, n + 1))], turns), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--answer", type=int, default=16, help="new tokens per turn")
    parser.add_argument("--repeats", type=int, default=5, help="pairs (a server session and its in-process "
                                                               "ideal) per system")
    parser.add_argument("--model", default="pc")
    parser.add_argument("--seed", type=int, default=1, help="seeds the sessions' salts and the order within pairs")
    parser.add_argument("--openblas", help="colon-separated libraries to preload (libgfortran, libopenblas)")
    parser.add_argument("--only-openblas", action="store_true", help="skip the bundled-BLAS pass")
    parser.add_argument("--no-cache-run", action="store_true",
                        help="with --openblas, also run the gateway with its prefix cache off")
    parser.add_argument("--no-peers", action="store_true", help="measure the gateway alone")
    parser.add_argument("--peers", help="directory bench/install_peers.sh installed the peers into")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    args = parser.parse_args()
    if args.turns < 2 or args.repeats < 1 or args.answer < 1:
        parser.error("--turns must be at least 2, --repeats and --answer at least 1")
    if args.only_openblas and not args.openblas:
        parser.error("--only-openblas needs --openblas")
    results = common.Results("mlx_session", common.public_settings(vars(args)), tee=True)
    try:
        print(f"machine: {common.machine()}")
        print(f"model {args.model}, {args.turns} turns of {args.answer} new tokens, greedy, EOS as usual on both "
              f"sides, only sessions whose every answer runs to the limit; {args.repeats} pairs per system (a server "
              "session and the in-process ideal on the same conversation, order random per pair) after a warm-up; "
              "median (min–max) over pairs; ratios per pair.\n", flush=True)
        path = common.build_model(args.model, Path(args.cache))
        order = random.Random(args.seed)
        run = f"{order.randrange(16**6):06x}"
        setups = common.blas_setups(args.openblas)
        if args.only_openblas:
            setups = setups[1:]
        for blas in setups:
            measured: list[tuple[str, list[dict[str, Any]]]] = []
            with common.RawWorker(blas) as raw:
                for number, (label, kind, model, key, context) in enumerate(systems(path, blas, args)):
                    if context is None:
                        print(common.missing_peer(label, common.peers_dir(args.peers)), flush=True)
                        results.write(kind="missing", system=label, blas=blas.name)
                        continue
                    with context as base:
                        salt = f"{run}{blas.name[0]}{number}"  # no two sessions alike; all the same length
                        measured.append((label, measure(label, kind, base, model, key, raw, path, blas.name, salt,
                                                        args, order, results)))
            report(blas.name, measured, args, results)
        print(f"\nraw results: {results.path.relative_to(common.ROOT)}")
    finally:
        results.close()


if __name__ == "__main__":
    main()
