"""The gateway's reading of a model's files agrees with what mlx-lm decides when it loads the tokenizer.

`mlxlm.py` mirrors mlx-lm's rules for picking a tool parser and think markers; these tests hold the mirror to
mlx-lm's own functions (private ones: an mlx-lm upgrade that changes them fails here first)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.mlx import mlxlm
from gateway.adapters.mlx.dummy import dummy_dir
from gateway.adapters.mlx.traits import ModelTraits, dummy_traits, folder_traits, probe
from gateway.config import DummyArch, parse_config

pytestmark = pytest.mark.mlx


class StubTokenizer:
    """What mlx-lm's inference functions read from a tokenizer."""

    def __init__(self, chat_template: Any, vocab: list[str]) -> None:
        self.chat_template = chat_template
        self._vocab = {token: i for i, token in enumerate(vocab)}

    def get_vocab(self) -> dict[str, int]:
        return self._vocab

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self._vocab.get(text, 0)]


def template_cases() -> list[tuple[str | None, list[str]]]:
    cases: list[tuple[str | None, list[str]]] = [(None, []), ("plain {{ messages }}", []), ({"a": "b"}, [])]  # type: ignore[list-item]
    for _, alternatives in mlxlm.TEMPLATE_RULES:
        for alternative in alternatives:
            cases.append(("{% for m in messages %}" + " ".join(alternative) + "{% endfor %}", []))
            cases.append((alternative[0], []))  # half of a two-marker rule falls through to later rules
    cases += [(None, list(mlxlm.XTML_TOKENS)), (None, ["<|tool_call_start|>", "<|tool_call_end|>"]),
              ("<tool_call> no name", ["<|tool_call_start|>"])]
    return cases


@pytest.mark.parametrize(("template", "vocab"), template_cases())
def test_the_tool_parser_rules_match_mlx_lm(template: Any, vocab: list[str]) -> None:
    from mlx_lm.tokenizer_utils import _infer_tool_parser

    mirrored = mlxlm.infer_tool_parser(template if isinstance(template, str) else None, set(vocab))
    assert mirrored == _infer_tool_parser(StubTokenizer(template, vocab))


@pytest.mark.parametrize("vocab", [
    [], ["<think>"], ["<think>", "</think>"], ["<longcat_think>", "</longcat_think>"],
    ["<|think:start|>", "<|think:end|>"], ["<|channel>", "<channel|>"], list(mlxlm.XTML_TOKENS),
    list(mlxlm.XTML_TOKENS[:3]),
])
def test_the_think_marker_rules_match_mlx_lm(vocab: list[str]) -> None:
    from mlx_lm.tokenizer_utils import _infer_thinking

    assert mlxlm.infer_thinking(set(vocab)) == (_infer_thinking(StubTokenizer(None, vocab))[0] is not None)


def test_the_mirrored_lists_name_what_mlx_lm_has() -> None:
    spec = importlib.util.find_spec("mlx_lm")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    parsers = {path.stem for path in (root / "tool_parsers").glob("*.py")}
    assert {name for name, _ in mlxlm.TEMPLATE_RULES} <= parsers
    with_defaults = {path.stem for path in (root / "models").glob("*.py") if "TOKENIZER_DEFAULTS" in path.read_text()}
    assert with_defaults == mlxlm.MODEL_TYPES_WITH_TOKENIZER_DEFAULTS


def loaded_traits(folder: Path) -> ModelTraits:
    _, tokenizer = mlxlm.load(folder)
    parser = mlxlm.tokenizer_tool_parser(tokenizer)
    return ModelTraits(tool_parser=parser.name if parser else None, thinking=mlxlm.think_markers(tokenizer) is not None)


def test_a_model_directory_reads_as_mlx_lm_loads_it(mlx_cache: Path, tmp_path: Path) -> None:
    built = dummy_dir(DummyArch(), mlx_cache)
    assert folder_traits(built) == loaded_traits(built) == dummy_traits() == ModelTraits(tool_parser="json_tools",
                                                                                          thinking=True)
    variant = tmp_path / "variant"
    shutil.copytree(built, variant)
    config = json.loads((variant / "tokenizer_config.json").read_text())
    (variant / "chat_template.jinja").write_text("{{ messages }} <tool_call>\n<function=")  # wins over the config's
    config["chat_template"] = "<minimax:tool_call>"
    (variant / "tokenizer_config.json").write_text(json.dumps(config))
    assert folder_traits(variant) == loaded_traits(variant) == ModelTraits(tool_parser="qwen3_coder", thinking=True)
    config["tool_parser_type"] = "mistral"  # named by the checkpoint: no inference
    (variant / "tokenizer_config.json").write_text(json.dumps(config))
    assert folder_traits(variant) == loaded_traits(variant) == ModelTraits(tool_parser="mistral", thinking=True)


def test_what_files_cannot_tell_is_left_to_the_load(mlx_cache: Path, tmp_path: Path) -> None:
    variant = tmp_path / "variant"
    shutil.copytree(dummy_dir(DummyArch(), mlx_cache), variant)
    config = json.loads((variant / "tokenizer_config.json").read_text())
    (variant / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template_type": "deepseek_v32"}))
    assert folder_traits(variant) is None  # a template mlx-lm supplies in Python
    (variant / "tokenizer_config.json").write_text(json.dumps(config))
    (variant / "tokenizer.json").unlink()
    assert folder_traits(variant) is None  # no vocabulary to read

    def spec(source: str, extra: str = "") -> Any:
        return parse_config(f"models: [{{name: m, adapter: mlx, source: {json.dumps(source)}{extra}}}]").models[0]

    assert probe(spec("hf:acme/not-in-any-cache"), []) is None
    assert probe(spec(str(tmp_path / "missing")), []) is None
    built = str(dummy_dir(DummyArch(), mlx_cache))
    assert probe(spec(built), [str(tmp_path)]) is None  # outside allowed_paths: not even read
    assert probe(spec(built, ", tool_parser: pythonic"), []) == ModelTraits(tool_parser="pythonic", thinking=True)
