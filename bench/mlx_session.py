"""(b) Agent session: a 10-turn Codex-shaped conversation, full history resent every turn, same run.

The "pc" dummy model (~22 M params: prefill dominates). Codex-shaped: long instructions
(~1,300 tokens) and a short task, then every turn appends the model's 16-token answer (as
the client received it: Codex echoes its output items) and a ~120-token tool output, the
whole history resent (store false, prompt_cache_key), so the prompt grows to ~2,500 tokens
by turn 10. Per turn: the median TTFT over --repeats sessions (each salted at its first
token, so sessions share nothing) and the cached tokens as reported. The ideal for the
last turn is measured in-process in the same run: everything the previous turn left in
the KV cache (its prompt and answer) is reused where the new prompt still matches it,
only the rest is computed, then the first token. Systems: the gateway (/v1/responses, store false,
prompt_cache_key), the gateway with its prefix cache off, mlx_lm.server (chat, its prompt
cache on) and vllm-mlx (continuous batching, /v1/responses) when installed.

    .venv/bin/python bench/mlx_session.py [--turns 10] [--openblas LIBS] [--no-peers]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path
from typing import Any

import mlx_common as common

WORDS = ("file", "test", "error", "build", "patch", "module", "function", "return", "value", "worker", "stream",
         "request", "cache", "token", "model", "server", "client", "result", "change", "review")


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


async def session(kind: str, base: str, model: str, eos: int, instructions: str, users: list[str], answer: int,
                  key: str | None) -> tuple[list[common.Run], list[list[dict[str, str]]]]:
    """Run every turn; also return each turn's conversation as chat messages (for the in-process ideal)."""
    runs: list[common.Run] = []
    chats: list[list[dict[str, str]]] = []
    items: list[dict[str, Any]] = [{"type": "message", "role": "developer", "content": instructions}]
    messages: list[dict[str, str]] = [{"role": "system", "content": instructions}]
    async with common.client() as http:
        warm = await (common.stream_responses(http, base, {"model": model, "input": "hello", "max_output_tokens": 4})
                      if kind == "responses" else
                      common.stream_chat(http, base, {"model": model, "messages": [{"role": "user", "content": "hi"}],
                                                      "max_tokens": 4}))
        if warm.error:
            raise RuntimeError(warm.error)
        for user in users:
            items.append({"type": "message", "role": "user", "content": user})
            messages.append({"role": "user", "content": user})
            chats.append(list(messages))
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
    return runs, chats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--answer", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="sessions per system; per-turn TTFTs are medians")
    parser.add_argument("--model", default="pc")
    parser.add_argument("--openblas", help="colon-separated libraries to preload (libgfortran, libopenblas)")
    parser.add_argument("--only-openblas", action="store_true", help="skip the bundled-BLAS pass")
    parser.add_argument("--no-cache-run", action="store_true",
                        help="with --openblas, also run the gateway with its prefix cache off")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--peers", help="directory bench/install_peers.sh installed the peers into")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    args = parser.parse_args()
    print(f"machine: {common.machine()}")
    path = common.build_model(args.model, Path(args.cache))
    eos = common.eos_id(path)
    salt = f"{random.randrange(16**6):06x}"
    setups = common.blas_setups(args.openblas)
    if args.only_openblas:
        setups = setups[1:]
    for blas in setups:
        systems: list[tuple[str, str, str, Any, str | None]] = [
            ("**gateway**", "responses", "bench", lambda b=blas: common.gateway({"bench": path}, b), "thread-1")]
        if args.no_cache_run and blas.libraries:  # minutes per session with the bundled BLAS: OpenBLAS only
            systems.append(("gateway, prefix cache off", "responses", "bench",
                            lambda b=blas: common.gateway({"bench": path}, b, prefix_cache_mb=0), "thread-1"))
        if not args.no_peers:
            systems.append(("mlx_lm.server (chat)", "chat", str(path), lambda b=blas: common.mlx_lm_server(path, b),
                            None))
            binary = common.vllm_mlx_binary(common.peers_dir(args.peers))
            if binary is not None:
                systems.append(("vllm-mlx continuous batching (responses)", "responses", str(path),
                                lambda b=blas, v=binary: common.vllm_mlx_server(v, path, b, "--continuous-batching"), None))
            else:
                print(common.missing_peer("vllm-mlx", common.peers_dir(args.peers)), flush=True)
        results: list[tuple[str, list[list[common.Run]]]] = []
        ideal: dict[str, Any] = {}
        for index, (label, kind, model, start, key) in enumerate(systems):
            sessions = []
            try:
                with start() as base:
                    for repeat in range(args.repeats):
                        instructions, users = conversation(f"{salt}-{blas.name}-{index}-{repeat}", args.turns)
                        runs, chats = common.run_async(session(kind, base, model, eos, instructions, users,
                                                               args.answer, f"{key}-{repeat}" if key else None))
                        sessions.append(runs)
                        print(f"{label}: " + " ".join(f"{r.ttft:.2f}" for r in runs), flush=True)
                        if index == 0 and repeat == 0:
                            # The ideal, from the gateway's own conversation, measured while nothing else runs:
                            # all that turn N-1 left in the KV cache (prompt and answer) is reused where turn N's
                            # prompt still matches it; only the rest is computed.
                            ideal = common.raw({"mode": "prefill", "model": str(path), "before": chats[-2],
                                                "answer": args.answer, "after": chats[-1], "repeats": 5}, blas)
            except Exception as exc:
                print(f"{label}: failed: {type(exc).__name__}: {exc}", flush=True)
            if sessions:
                results.append((label, sessions))
        ideal_ttft = common.median(ideal["ttft"])
        print(f"\n### BLAS: {blas.name}\n")
        print(f"Turn-{args.turns} ideal (in-process; of {ideal['prompt_tokens']} prompt tokens "
              f"{ideal['prefix_tokens']} cached, {ideal['new_tokens']} computed): {ideal_ttft:.3f} s\n")
        headers = ["system", "TTFT turn 1 s", f"TTFT turn {args.turns} s", f"turn {args.turns} ÷ ideal",
                   f"prompt tokens turn {args.turns}", f"cached turn {args.turns}",
                   f"min cached share turns 2..{args.turns}", "sum of TTFTs s"]
        rows = []
        per_turn = []
        for label, sessions in results:
            ttfts = [common.median([runs[t].ttft for runs in sessions]) for t in range(args.turns)]
            per_turn.append([label, *(f"{v:.2f}" for v in ttfts)])
            last = sessions[0][-1]
            shares = [r.cached / r.prompt_tokens for runs in sessions for r in runs[1:] if r.prompt_tokens]
            rows.append([label, ttfts[0], ttfts[-1], ttfts[-1] / ideal_ttft, last.prompt_tokens or "–",
                         last.cached, f"{min(shares):.1%}" if shares else "–", sum(ttfts)])
        print(common.table(headers, rows))
        gateway_runs = results[0][1][0]
        turns = [["prompt tokens (gateway)", *(r.prompt_tokens for r in gateway_runs)],
                 ["cached (gateway)", *(r.cached for r in gateway_runs)], *per_turn]
        print()
        print(common.table(["turn", *(str(t) for t in range(1, args.turns + 1))], turns), flush=True)


if __name__ == "__main__":
    main()
