"""Dummy models: real mlx-lm files, byte-identical for the same architecture; the gateway never imports MLX."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.adapters.mlx.dummy import FILES, dummy_dir
from gateway.config import DummyArch

pytestmark = pytest.mark.mlx


def digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in FILES}


def build(cache: Path, arch: dict[str, object]) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.adapters.mlx.dummy", "--cache-dir", str(cache), json.dumps(arch)],
        check=True, capture_output=True, text=True, timeout=120,
    )
    return Path(result.stdout.strip())


def test_the_same_architecture_builds_byte_identical_files(mlx_cache: Path, tmp_path: Path) -> None:
    first = dummy_dir(DummyArch(), mlx_cache)
    again = build(tmp_path / "again", {})
    assert again.name == first.name
    assert digests(again) == digests(first)
    other = build(tmp_path / "other", {"seed": 1})
    assert other.name != first.name
    changed = {name for name in FILES if digests(other)[name] != digests(first)[name]}
    assert changed == {"model.safetensors"}  # the seed changes the weights, nothing else


def test_the_files_are_the_mlx_lm_on_disk_format(mlx_cache: Path) -> None:
    folder = dummy_dir(DummyArch(), mlx_cache)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["num_hidden_layers"] == DummyArch().layers
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    vocab = json.loads((folder / "tokenizer.json").read_text())
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert "<tool_call>" in tokenizer_config["chat_template"] and "tool_call.name" in tokenizer_config["chat_template"]
    added = {t["content"]: t["id"] for t in vocab["added_tokens"]}
    assert config["eos_token_id"] == added["<|im_end|>"]
    assert {"<think>", "</think>", "<tool_call>", "</tool_call>"} <= set(added)
    assert max(added.values()) < config["vocab_size"]
    assert (folder / "model.safetensors").read_bytes()[8:9] == b"{"  # safetensors: length, then a JSON header


def test_the_gateway_process_never_imports_mlx() -> None:
    code = (
        "import sys, gateway.app, gateway.cli, gateway.adapters, gateway.adapters.mlx.adapter; "
        "heavy = ('mlx', 'mlx_lm', 'transformers', 'tokenizers'); "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy); "
        "print(loaded)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
