"""Constrained decoding's cost: decode speed with a constraint ÷ without, and grammar compile time.

Each pair sends the same requests twice (tiny and small dummy models; `--concurrency` requests at once, so they
share a batch; the order alternating): once constrained (a JSON schema through `text.format`; Codex's apply_patch
grammar through a forced custom-tool call; or the same tool under `tool_choice: auto`, where the answer is free text
and only a call would be held) and once without (the same prompt, the same tools, `tool_choice: auto`, no format).
The schema case compares on one gateway (the same worker); with the grammar tool declared, `tool_choice: auto` is
held too, so the free side of the two tool cases goes to a second gateway serving the same models with
`constraints: off` (same weights, same prompt, its own worker).
Greedy decoding on both sides; the schema (a title of at least 1,000 characters) and the grammar cannot end within
the budget, and prompts whose free answer ends early (a random model's EOS) are skipped, so both sides of every
kept pair write exactly `--tokens` tokens per request (checked; skipped attempts are in the raw file). Speed is
output tokens over wall time of a non-streamed request (a forced call streams nothing until it closes, so
time-to-first-delta is not comparable). Both sides pay the same prefill: every request has its own first user
line (so neither side reuses the other's prompt) and the prefix cache serves the shared system prompt and tools to
both alike.

Compile time is measured in this process on the real tokenizer with the worker's own code
(gateway/adapters/mlx/constrain.py): the tokenizer's conversion (once per model), a grammar's first compile, and a
cached one (a copy of the compiled matcher).

    .venv/bin/python bench/constrained.py [--pairs 5] [--tokens 192]

Loopback only (127.0.0.1). Raw results: bench/results/constrained-<time>.jsonl.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import mlx_common as common

APPLY_PATCH = json.loads((common.ROOT / "tests" / "fixtures" / "codex_apply_patch_tool.json").read_text())
# A title longer than any budget here: the constrained answer cannot end before the free one.
NOTES = {"type": "object", "properties": {"title": {"type": "string", "minLength": 1000},
                                          "notes": {"type": "array", "items": {"type": "string"}}},
         "required": ["title", "notes"], "additionalProperties": False}
# case -> (constrained side's fields, free side's fields, the gateway the free side goes to)
CASES = {
    "json_schema": ({"text": {"format": {"type": "json_schema", "name": "notes", "schema": NOTES, "strict": True}}},
                    {}, "held"),
    "apply_patch": ({"tools": [APPLY_PATCH], "tool_choice": {"type": "custom", "name": "apply_patch"}},
                    {"tools": [APPLY_PATCH], "tool_choice": "auto"}, "off"),
    # Every Codex turn: apply_patch declared, tool_choice auto. Text stays free; a call would be held to the grammar.
    "auto": ({"tools": [APPLY_PATCH], "tool_choice": "auto"}, {"tools": [APPLY_PATCH], "tool_choice": "auto"}, "off"),
}


def timed(http: httpx.Client, base: str, body: dict[str, Any]) -> tuple[float, int]:
    began = time.perf_counter()
    response = http.post(f"{base}/v1/responses", json=body)
    elapsed = time.perf_counter() - began
    response.raise_for_status()
    return elapsed, int(response.json()["usage"]["output_tokens"])


def side_run(http: httpx.Client, base: str, bodies: list[dict[str, Any]]) -> tuple[float, list[int]]:
    """Send `bodies` at once; (wall seconds until the last answer, output tokens of each)."""
    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        counts = [count for _, count in pool.map(lambda body: timed(http, base, body), bodies)]
    return time.perf_counter() - began, counts


def speed_pairs(bases: dict[str, str], model: str, case: str, args: argparse.Namespace,
                results: common.Results) -> list[float]:
    constrained, free, free_gateway = CASES[case]
    sides_at = {"constrained": bases["held"], "free": bases[free_gateway]}
    ratios = []
    with httpx.Client(timeout=300, limits=httpx.Limits(max_connections=args.concurrency)) as http:
        for side, extra in (("constrained", constrained), ("free", free)):
            timed(http, sides_at[side], {"model": model, "input": "warm up", "max_output_tokens": 8, **extra})
        index = 0
        for attempt in range(args.pairs * 6):  # prompts whose free greedy answer ends early are skipped
            if len(ratios) == args.pairs:
                break
            bodies = [{"model": model, "input": common.prompt_text(attempt * args.concurrency + j, case),
                       "max_output_tokens": args.tokens, "temperature": 0.0, "reasoning": {"effort": "none"}}
                      for j in range(args.concurrency)]
            sides = [("constrained", constrained), ("free", free)]
            if index % 2:
                sides.reverse()
            measured: dict[str, tuple[float, list[int]]] = {}
            for side, extra in sides:  # each side's own first line: neither reuses the other's prompt
                measured[side] = side_run(http, sides_at[side], [{**body, **extra, "input": f"{side}: {body['input']}"}
                                                              for body in bodies])
            full = all(count == args.tokens for _, counts in measured.values() for count in counts)
            ratio = (measured["free"][0] / measured["constrained"][0]) if full else None
            results.write(kind="pair", model=model, case=case, concurrency=args.concurrency, attempt=attempt,
                          full=full, ratio=ratio, **{f"{side}_seconds": t for side, (t, _) in measured.items()},
                          **{f"{side}_tokens": n for side, (_, n) in measured.items()})
            if ratio is not None:
                ratios.append(ratio)
                index += 1
    return ratios


def compile_times(path: Path, results: common.Results, model: str) -> dict[str, float]:
    from mlx_lm.utils import load_tokenizer

    from gateway.adapters.base import Constraint, InputGrammar
    from gateway.adapters.mlx.constrain import Constraints
    from gateway.grammars import escaped_grammar, start_name

    tokenizer = load_tokenizer(path)  # the wrapper the worker holds
    constraints = Constraints(tokenizer, "json_tools", None)
    began = time.perf_counter()
    constraints._llg_tokenizer()
    convert = time.perf_counter() - began
    patch = InputGrammar(start=start_name("G0"), rules=escaped_grammar(APPLY_PATCH["format"]["definition"], "lark",
                                                                       "G0"))
    out = {"tokenizer_ms": convert * 1000}
    for name, constraint in {
        "json_schema": Constraint(schema=NOTES),
        "apply_patch": Constraint(calls={"apply_patch": {}}, inputs={"apply_patch": patch}, parallel=False),
        "auto": Constraint(calls={"apply_patch": {}}, inputs={"apply_patch": patch}, optional=True),
    }.items():
        grammar = constraints.grammar(constraint, thinking=False)
        began = time.perf_counter()
        constraints._matcher(grammar)
        cold = time.perf_counter() - began
        cached = []
        for _ in range(20):
            began = time.perf_counter()
            constraints._matcher(grammar)
            cached.append(time.perf_counter() - began)
        out[f"{name}_cold_ms"] = cold * 1000
        out[f"{name}_cached_ms"] = statistics.median(cached) * 1000
    results.write(kind="compile", model=model, **out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=192)
    parser.add_argument("--concurrency", type=int, default=1, help="requests at once on each side (a batch)")
    args = parser.parse_args()
    results = common.Results("constrained", common.public_settings(vars(args)))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        models = {name: common.build_model(name, Path(folder)) for name in ("tiny", "small")}
        blas = common.blas_setups(None)[0]
        compiled = {name: compile_times(path, results, name) for name, path in models.items()}
        # Prefix cache on: each side reuses the shared tools prefix on its own gateway.
        with common.gateway(models, blas) as held, common.gateway(models, blas, constraints="off") as free:
            for model in models:
                for case in CASES:
                    ratios = speed_pairs({"held": held, "off": free}, model, case, args, results)
                    rows.append([model, case, f"{len(ratios)}/{args.pairs}", common.fmt_spread(ratios),
                                 f"{compiled[model][f'{case}_cold_ms']:.1f}",
                                 f"{compiled[model][f'{case}_cached_ms']:.3f}"])
        conversions = {name: round(c["tokenizer_ms"], 1) for name, c in compiled.items()}
    print(common.table(["model", "constraint", "pairs", "tokens/s constrained ÷ free (median, min–max)",
                        "compile cold ms", "cached ms"], rows))
    print(f"tokenizer conversion (once per model), ms: {conversions}")
    print(f"raw: {results.path.relative_to(common.ROOT)}")
    results.close()


if __name__ == "__main__":
    main()
