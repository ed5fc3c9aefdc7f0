"""Structured generation's next-token mask computed while the model step runs (overlap) or after it, in one run.

The worker's own decode loop (`SoloDecoder`) and constraint processor (`gateway/adapters/mlx/constrain.py`) run in
this process, three ways per round in a seeded random order: free (no constraint), constrained with the overlap off,
and constrained with it on. The constraint is a strict JSON schema whose title is at least 1,000 characters, so no
side can end within the budget; greedy decoding, so both constrained sides must write the same tokens (checked).
Speed is decode tokens per second after the prompt is fed; ratios are taken per round, then min / median / max.

Models: the tiny and small dummies (their tokenizers have about 2,000 tokens) and, with `--tokenizer`, a tiny-shaped
random model with that tokenizer's vocabulary: bench/install_peers.sh puts Llama 3's (128,256 tokens) in
DIR/llama3-tokenizer. The mask costs more with a real vocabulary, which is where overlapping it can pay.

    .venv/bin/python bench/mask_overlap.py [--rounds 9] [--tokens 192] [--tokenizer DIR/llama3-tokenizer]
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import mlx_common as common

NOTES = {"type": "object", "properties": {"title": {"type": "string", "minLength": 1000},
                                          "notes": {"type": "array", "items": {"type": "string"}}},
         "required": ["title", "notes"], "additionalProperties": False}
PROMPT = "Write the release notes for the gateway as JSON, with a long title and a list of notes."
SIDES = ("free", "overlap off", "overlap on")


def real_vocab_model(tokenizer: Path, cache: Path) -> Path:
    """The tiny dummy's shape with `tokenizer`'s vocabulary: random weights, the tokenizer's files copied in."""
    from transformers import AutoTokenizer

    from gateway.adapters.mlx.dummy import build_dummy
    from gateway.config import DummyArch

    size = len(AutoTokenizer.from_pretrained(str(tokenizer)))
    dest = cache / f"real-vocab-{tokenizer.name}-{size}"
    if not (dest / "config.json").exists():
        dest.mkdir(parents=True, exist_ok=True)
        build_dummy(DummyArch(**{**common.ARCHS["tiny"], "vocab_size": size}), dest)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tokenizer / name, dest / name)
    return dest


class Decoder:
    """One model, loaded once; `run` decodes `tokens` tokens from the prompt, constrained or not."""

    def __init__(self, path: Path) -> None:
        import mlx.core as mx

        from gateway.adapters.mlx import mlxlm
        from gateway.adapters.mlx.constrain import Constraints

        self.model, self.tokenizer = mlxlm.load(path)
        self.constraints = Constraints(self.tokenizer, "json_tools", None)
        self.prompt = self.tokenizer.encode(PROMPT)
        self.vocab = len(getattr(self.tokenizer, "_tokenizer", self.tokenizer))
        self._greedy = lambda logprobs: mx.argmax(logprobs, axis=-1)

    def run(self, side: str, tokens: int) -> tuple[float, list[int]]:
        from gateway.adapters.base import Constraint
        from gateway.adapters.mlx import mlxlm
        from gateway.adapters.mlx.solo import SoloDecoder

        processors: list[Any] | None = None
        if side != "free":
            self.constraints.overlap = side == "overlap on"
            processors = [self.constraints.processor(Constraint(schema=NOTES), len(self.prompt), False, False)]
        decoder = SoloDecoder(self.model, mlxlm.make_prompt_cache(self.model), [], self.prompt, self._greedy,
                              processors)
        while decoder.prefilling:
            decoder.prefill(512)
        started = time.perf_counter()
        out = [decoder.step() for _ in range(tokens)]
        return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=192)
    parser.add_argument("--models", default="tiny,small")
    parser.add_argument("--tokenizer", help="a Hugging Face tokenizer directory: adds a model with its vocabulary")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mlxgw-bench-models"))
    args = parser.parse_args()

    results = common.Results("mask_overlap", common.public_settings(vars(args)), tee=True)
    print(f"machine: {common.machine()}")
    print(f"{args.tokens} tokens per run, greedy, {args.rounds} rounds after a warm-up, the three sides in a random "
          "order per round; min–max in brackets\n")
    models = {name: common.build_model(name, Path(args.cache)) for name in args.models.split(",") if name}
    if args.tokenizer:
        models[Path(args.tokenizer).name] = real_vocab_model(Path(args.tokenizer), Path(args.cache))
    order = random.Random(args.seed)
    rows = []
    for name, path in models.items():
        decoder = Decoder(path)
        for side in SIDES:
            decoder.run(side, 16)  # warm-up: compile and load (not counted)
        speeds: dict[str, list[float]] = {side: [] for side in SIDES}
        for number in range(args.rounds):
            sides = list(SIDES)
            order.shuffle(sides)
            outputs = {}
            for side in sides:
                seconds, outputs[side] = decoder.run(side, args.tokens)
                speeds[side].append(args.tokens / seconds)
                results.write(kind="run", model=name, vocab=decoder.vocab, round=number, side=side,
                              tokens=len(outputs[side]), seconds=seconds)
            if outputs["overlap on"] != outputs["overlap off"]:
                raise SystemExit(f"{name}: the overlap changed the constrained output in round {number}")
        on_off = [on / off for on, off in zip(speeds["overlap on"], speeds["overlap off"], strict=True)]
        on_free = [on / free for on, free in zip(speeds["overlap on"], speeds["free"], strict=True)]
        off_free = [off / free for off, free in zip(speeds["overlap off"], speeds["free"], strict=True)]
        rows.append([name, decoder.vocab, args.rounds, common.fmt_spread(speeds["free"], digits=0),
                     common.fmt_spread(on_off), common.fmt_spread(off_free), common.fmt_spread(on_free)])
    print(common.table(["model", "vocab", "rounds", "free tok/s", "overlap on ÷ off", "constrained ÷ free, off",
                        "constrained ÷ free, on"], rows))
    results.close()
    print(f"raw results: {results.path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
