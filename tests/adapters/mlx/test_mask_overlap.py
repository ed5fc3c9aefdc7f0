"""The next-token mask computed while the model step runs changes nothing: greedy constrained output is the same
token for token with the overlap on and off, and the answer is valid JSON for the schema (jsonschema checks it).

The worker's decode loop and processor run in this process on the dummy model, so both sides see the same weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.adapters.base import Constraint
from gateway.config import DummyArch

pytestmark = pytest.mark.mlx

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
                                           "size": {"type": "integer", "minimum": 0, "maximum": 99},
                                           "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}},
          "required": ["name", "size", "tags"], "additionalProperties": False}
BUDGET = 80


def decode(path: Path, prompt_text: str, overlap: bool) -> list[int]:
    import mlx.core as mx

    from gateway.adapters.mlx import mlxlm
    from gateway.adapters.mlx.constrain import Constraints
    from gateway.adapters.mlx.solo import SoloDecoder

    model, tokenizer = mlxlm.load(path)
    constraints = Constraints(tokenizer, "json_tools", None, overlap=overlap)
    prompt = tokenizer.encode(prompt_text)
    processor = constraints.processor(Constraint(schema=SCHEMA), len(prompt), False, False)
    decoder = SoloDecoder(model, mlxlm.make_prompt_cache(model), [], prompt,
                          lambda logprobs: mx.argmax(logprobs, axis=-1), [processor])
    while decoder.prefilling:
        decoder.prefill(512)
    eos = set(tokenizer.eos_token_ids)
    out: list[int] = []
    while len(out) < BUDGET:
        token = decoder.step()
        if token in eos:
            break
        out.append(token)
    return out


@pytest.mark.parametrize("prompt", ["Describe a box as JSON.", "name, size and tags, please"])
def test_the_overlapped_mask_gives_the_same_valid_answer(mlx_cache: Path, prompt: str) -> None:
    from gateway.adapters.mlx import mlxlm
    from gateway.adapters.mlx.dummy import dummy_dir

    path = dummy_dir(DummyArch(), mlx_cache)
    sequential, overlapped = decode(path, prompt, False), decode(path, prompt, True)
    assert overlapped == sequential
    _, tokenizer = mlxlm.load(path)
    answer: Any = json.loads(tokenizer.decode(overlapped))
    jsonschema.validate(answer, SCHEMA)
