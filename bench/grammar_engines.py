"""llguidance (the gateway's engine) against xgrammar, same grammars, same tokenizer, one run.

Cases: three JSON schemas (the structured-output tests' nested strict schema, a small tool schema, a schema with an
array of objects) and Codex's apply_patch grammar (Lark as Codex sends it for llguidance; the same language written
by hand in xgrammar's EBNF, which reads no Lark). For each engine and case:
- compile, cold: a fresh compiler each time (no cache), median of `--compiles`;
- mask time per token: a fixed valid output is walked token by token, the next-token mask computed before each
  token is accepted; median and p95 over all steps of `--walks` walks.
Both engines get the same tokenizer, and both must accept every walked output: the gateway's dummy model's (built
here, about 2,000 tokens), or with `--tokenizer` a real one, such as Llama 3's 128,256 tokens that
bench/install_peers.sh puts in DIR/llama3-tokenizer (mask time grows with the vocabulary).

xgrammar needs torch, so the measurement runs in the peers' venv (bench/install_peers.sh installs xgrammar and the
gateway's llguidance version next to vllm-mlx); this script starts itself there:

    .venv/bin/python bench/grammar_engines.py --peers DIR [--compiles 7] [--walks 5] [--tokenizer TOKENIZER_DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

NESTED = {
    "type": "object", "additionalProperties": False, "required": ["name", "level", "point", "tags"],
    "properties": {
        "name": {"type": "string", "maxLength": 8}, "level": {"enum": ["low", "mid", "high"]},
        "point": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 99},
                                                   "y": {"type": "boolean"}},
                  "required": ["x", "y"], "additionalProperties": False},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}},
}
READ = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"],
        "additionalProperties": False}
PLAN = {"type": "object", "additionalProperties": False, "required": ["steps"],
        "properties": {"steps": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["step", "status"],
            "properties": {"step": {"type": "string"}, "status": {"enum": ["pending", "in_progress", "completed"]}}}}}}
PATCH_EBNF = r"""root ::= begin_patch hunk+ end_patch
begin_patch ::= "*** Begin Patch" "\n"
end_patch ::= "*** End Patch" "\n"?
hunk ::= add_hunk | delete_hunk | update_hunk
add_hunk ::= "*** Add File: " filename "\n" add_line+
delete_hunk ::= "*** Delete File: " filename "\n"
update_hunk ::= "*** Update File: " filename "\n" change_move? change?
filename ::= [^\n]+
add_line ::= "+" [^\n]* "\n"
change_move ::= "*** Move to: " filename "\n"
change ::= (change_context | change_line)+ eof_line?
change_context ::= ("@@" | "@@ " [^\n]+) "\n"
change_line ::= ("+" | "-" | " ") [^\n]* "\n"
eof_line ::= "*** End of File" "\n"
"""
PATCH = ("*** Begin Patch\n*** Update File: src/app.py\n@@ def main():\n-    print(\"hello\")\n+    print(\"hello, world\")\n"
         "     return 0\n*** Add File: notes.txt\n+first line\n+second line\n*** End Patch\n")
CASES: dict[str, tuple[str, Any, str]] = {
    # name: (kind, llguidance grammar / schema, the output walked)
    "json nested": ("json", NESTED, json.dumps({"name": "box", "level": "mid", "point": {"x": 42, "y": True},
                                                "tags": ["a", "c"]})),
    "json tool": ("json", READ, json.dumps({"path": "src/main.py"})),
    "json plan": ("json", PLAN, json.dumps({"steps": [{"step": "read the code", "status": "completed"},
                                                      {"step": "write the fix", "status": "in_progress"}]})),
}
# Compact JSON with json.dumps's separators, as the gateway asks for it (call_formats.COMPACT; this file runs in the
# peers' venv, without the gateway), on both engines.
COMPACT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "codex_apply_patch_tool.json"


# ------------------------------------------------------------------ measurement (the peers' venv)


def _llg_compile(tokenizer: Any, kind: str, spec: Any) -> Any:
    import llguidance

    grammar = (llguidance.LLMatcher.grammar_from_json_schema(spec, defaults=COMPACT)
               if kind == "json" else llguidance.grammar_from("lark", spec))
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return matcher


def _xgr_compile(info: Any, kind: str, spec: Any) -> Any:
    import xgrammar

    compiler = xgrammar.GrammarCompiler(info, cache_enabled=False)
    if kind == "json":
        return compiler.compile_json_schema(json.dumps(spec), any_whitespace=False, separators=(", ", ": "))
    return compiler.compile_grammar(PATCH_EBNF)


def measure(model_dir: str, compiles: int, walks: int) -> list[dict[str, Any]]:
    import llguidance
    import llguidance.hf
    import numpy as np
    import xgrammar
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(model_dir)
    cases = dict(CASES)
    cases["apply_patch"] = ("grammar", json.loads(FIXTURE.read_text())["format"]["definition"], PATCH)
    llg_tokenizer = llguidance.hf.from_tokenizer(hf, n_vocab=len(hf))
    xgr_info = xgrammar.TokenizerInfo.from_huggingface(hf, vocab_size=len(hf))
    rows = []
    for name, (kind, spec, output) in cases.items():
        tokens = hf.encode(output, add_special_tokens=False)

        llg_compile = partial(_llg_compile, llg_tokenizer, kind, spec)
        xgr_compile = partial(_xgr_compile, xgr_info, kind, spec)

        for engine, compile_once in (("llguidance", llg_compile), ("xgrammar", xgr_compile)):
            seconds = []
            for _ in range(compiles):
                started = time.perf_counter()
                compiled = compile_once()
                seconds.append(time.perf_counter() - started)
            steps: list[float] = []
            for _ in range(walks):
                if engine == "llguidance":
                    matcher = llg_compile()
                    for token in tokens:
                        started = time.perf_counter()
                        np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)
                        steps.append(time.perf_counter() - started)
                        assert matcher.consume_token(token), (engine, name, matcher.get_error())
                    accepted = matcher.is_accepting()
                else:
                    matcher = xgrammar.GrammarMatcher(compiled)
                    bitmask = xgrammar.allocate_token_bitmask(1, xgr_info.vocab_size)
                    for token in tokens:
                        started = time.perf_counter()
                        matcher.fill_next_token_bitmask(bitmask)
                        steps.append(time.perf_counter() - started)
                        assert matcher.accept_token(token), (engine, name)
                    accepted = matcher.is_terminated() or matcher.accept_token(hf.eos_token_id or 0)
                assert accepted, f"{engine} did not accept the whole {name} output"
            steps.sort()
            rows.append({"engine": engine, "case": name, "vocab": len(hf), "output_tokens": len(tokens),
                         "compile_ms": [round(s * 1000, 3) for s in seconds],
                         "compile_ms_median": round(statistics.median(seconds) * 1000, 3),
                         "mask_us_median": round(statistics.median(steps) * 1e6, 1),
                         "mask_us_p95": round(steps[int(len(steps) * 0.95)] * 1e6, 1), "mask_steps": len(steps)})
    return rows


# ------------------------------------------------------------------ driver (the gateway's venv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", help="directory bench/install_peers.sh installed into")
    parser.add_argument("--compiles", type=int, default=7)
    parser.add_argument("--walks", type=int, default=5)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--tokenizer", help="a Hugging Face tokenizer directory to use instead of the dummy's")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the model directory: run the measurement here
    args = parser.parse_args()
    if args.measure:
        for row in measure(args.measure, args.compiles, args.walks):
            print(json.dumps(row), flush=True)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import mlx_common as common

    results = common.Results("grammar_engines", common.public_settings(vars(args)), tee=True)
    print(f"machine: {common.machine()}")
    peers = common.peers_dir(args.peers)
    python = peers / "venv-vmlx" / "bin" / "python" if peers else None
    if python is None or not python.exists():
        print(common.missing_peer("xgrammar", peers))
        results.write(kind="missing", system="xgrammar")
        results.close()
        return
    versions = subprocess.run([str(python), "-c", "import importlib.metadata as m; print("
                               "m.version('llguidance'), m.version('xgrammar'))"],
                              capture_output=True, text=True, check=True, timeout=120).stdout.split()
    print(f"llguidance {versions[0]}, xgrammar {versions[1]}; compile: {args.compiles} cold compiles (median); "
          f"mask: {args.walks} walks of each output, per token\n")
    path = Path(args.tokenizer) if args.tokenizer else common.build_model(args.model, Path(args.cache))
    out = subprocess.run([str(python), __file__, "--measure", str(path), "--compiles", str(args.compiles),
                          "--walks", str(args.walks)], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        results.write(kind="engine", llguidance=versions[0], xgrammar=versions[1], **row)
    table = [[r["case"], r["engine"], r["output_tokens"], r["compile_ms_median"],
              f"{min(r['compile_ms'])}–{max(r['compile_ms'])}", r["mask_us_median"], r["mask_us_p95"]] for r in rows]
    print(common.table(["case", "engine", "tokens walked", "compile ms (median)", "compile ms (min–max)",
                        "mask µs/token (median)", "mask µs/token (p95)"], table))
    source = f"{path.name}'s" if args.tokenizer else f"the {args.model} dummy's"
    print(f"\ntokenizer: {source} ({rows[0]['vocab'] if rows else '?'} tokens)")
    results.close()
    print(f"raw results: {results.path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
