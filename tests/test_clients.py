"""`gateway clients`: the Codex catalog and config, the OpenCode block, and what they claim about each model.

What a config claims must be what the gateway plans with: the same capabilities the adapters report, read without
starting the gateway (model files for mlx models, constants for scripted ones).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest

from gateway.adapters import WorkerPool, build_adapter
from gateway.cli import main
from gateway.clients import codex_catalog, codex_config_toml, opencode_config, probe_capabilities
from gateway.config import GatewayConfig, parse_config
from tests.conftest import ROOT


def write_model(folder: Path, *, tools: bool, max_position: int = 40960) -> Path:
    """A directory with what an mlx-lm model's files say about it (the weights are placeholder bytes)."""
    from gateway.adapters.mlx.dummy import CHAT_TEMPLATE

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": max_position}))
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    markers = ["<|im_start|>", "<|im_end|>"]
    if tools:  # a template with tool calls (mlx-lm infers json_tools) and think markers in the vocabulary
        markers += ["<tool_call>", "</tool_call>", "<think>", "</think>"]
    template = CHAT_TEMPLATE if tools else "{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    added = [{"content": marker, "id": 2 + i} for i, marker in enumerate(markers)]
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 1}}, "added_tokens": added}))
    return folder


def hf_repo(cache: Path, repo: str, files: Path, *, commit: str = "a" * 40, ref: str = "main") -> Path:
    """`files` as `repo` in a huggingface-hub cache laid out as the hub writes it (blobs, refs, snapshot links)."""
    base = cache / f"models--{repo.replace('/', '--')}"
    snapshot = base / "snapshots" / commit
    (base / "blobs").mkdir(parents=True, exist_ok=True)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / ref).write_text(commit)
    snapshot.mkdir(parents=True)
    for file in sorted(files.iterdir()):
        data = file.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (base / "blobs" / digest).write_bytes(data)
        (snapshot / file.name).symlink_to(Path("../..") / "blobs" / digest)
    return snapshot


@pytest.fixture
def mixed(tmp_path: Path) -> GatewayConfig:
    """A scripted model, a dummy, a text-only model and a tool-calling one, and an hf: model not downloaded."""
    text_only, coder = write_model(tmp_path / "text-only", tools=False), write_model(tmp_path / "coder", tools=True)
    return parse_config(f"""
models:
  - {{name: scripted, aliases: [demo], adapter: scripted, script: {{mode: echo}}}}
  - {{name: tiny, adapter: mlx, source: dummy}}
  - {{name: plain, aliases: [p], adapter: mlx, source: "{text_only}"}}
  - {{name: coder, adapter: mlx, source: "{coder}"}}
  - {{name: remote, adapter: mlx, source: "hf:example-org/not-downloaded"}}
""")


def entries(config: GatewayConfig) -> dict[str, dict[str, object]]:
    return {entry["slug"]: entry for entry in codex_catalog(config)["models"]}


def test_the_catalog_claims_what_the_adapters_report(mixed: GatewayConfig) -> None:
    catalog = entries(mixed)
    pool = WorkerPool(mixed.mlx)
    for model in mixed.models:
        capabilities = build_adapter(model, pool).capabilities
        for slug in (model.name, *model.aliases):
            entry = catalog[slug]
            assert entry["input_modalities"] == (["text", "image"] if capabilities.vision else ["text"]), slug
            assert (entry["apply_patch_tool_type"] == "freeform") is capabilities.tool_calling, slug
            assert bool(entry["supported_reasoning_levels"]) is capabilities.reasoning, slug
            assert entry["supports_reasoning_summaries"] is capabilities.reasoning, slug


def test_text_only_models_are_not_offered_images_tools_or_reasoning(mixed: GatewayConfig) -> None:
    catalog = entries(mixed)
    for slug in ("plain", "p"):
        entry = catalog[slug]
        assert entry["input_modalities"] == ["text"]
        assert entry["apply_patch_tool_type"] is None and entry["shell_type"] == "disabled"
        assert entry["supported_reasoning_levels"] == [] and entry["default_reasoning_level"] is None
        assert "apply_patch" not in str(entry["base_instructions"])
    for slug in ("tiny", "coder"):  # mlx models are text-only, with tools and thinking when their files say so
        entry = catalog[slug]
        assert entry["input_modalities"] == ["text"]
        assert entry["apply_patch_tool_type"] == "freeform" and entry["shell_type"] == "shell_command"
        assert entry["default_reasoning_level"] == "medium"
    assert catalog["demo"]["input_modalities"] == ["text", "image"]  # the scripted adapter takes images


def test_opencode_claims_the_same(mixed: GatewayConfig) -> None:
    models = opencode_config(mixed, "http://127.0.0.1:8080/v1")["provider"]["mlxgw"]["models"]
    assert models["p"]["tool_call"] is False and models["p"]["reasoning"] is False
    assert models["p"]["attachment"] is False and models["p"]["modalities"] == {"input": ["text"], "output": ["text"]}
    assert models["coder"]["tool_call"] is True and models["coder"]["reasoning"] is True
    assert models["coder"]["attachment"] is False
    assert models["demo"]["attachment"] is True and models["demo"]["modalities"]["input"] == ["text", "image"]


def test_a_model_not_downloaded_is_configured_as_the_gateway_assumes(
        mixed: GatewayConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    probed = probe_capabilities(mixed)
    assert not probed["remote"].known and all(probed[name].known for name in ("scripted", "tiny", "plain", "coder"))
    assert entries(mixed)["remote"]["apply_patch_tool_type"] == "freeform"  # ASSUMED until its first load
    manifest = tmp_path / "m.yaml"
    manifest.write_text("models:\n  - {name: remote, adapter: mlx, source: 'hf:example-org/not-downloaded'}\n")
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    assert main(["clients", "codex", "--config", str(manifest)]) == 0
    assert "remote: its files are not on this machine yet" in capsys.readouterr().err


def test_clients_codex_prints_a_config_and_writes_the_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "fresh" / "codex"))  # a directory that does not exist yet
    assert main(["clients", "codex", "--config", str(ROOT / "gateway.yaml")]) == 0
    out, err = capsys.readouterr()
    catalog = tmp_path / "fresh" / "codex" / "mlx-gateway-models.json"
    assert f"# wrote the model catalog to {catalog}" in err
    config = tomllib.loads(out)
    assert config["model_catalog_json"] == str(catalog.resolve())
    assert config["model_providers"]["mlxgw"]["wire_api"] == "responses"
    assert config["model_providers"]["mlxgw"]["base_url"] == "http://127.0.0.1:8080/v1"
    assert set(config["profiles"]) == {"scripted", "demo", "echo", "tiny"}
    assert [m["slug"] for m in json.loads(catalog.read_text())["models"]] == ["scripted", "demo", "echo", "tiny"]
    assert not (tmp_path / "fresh" / "codex" / "config.toml").exists()  # printing never writes the config

    custom = tmp_path / "elsewhere" / "catalog.json"
    assert main(["clients", "codex", "--config", str(ROOT / "gateway.yaml"), "--catalog", str(custom),
                 "--base-url", "http://10.0.0.2:9000/v1"]) == 0
    config = tomllib.loads(capsys.readouterr().out)
    assert config["model_catalog_json"] == str(custom.resolve()) and custom.is_file()
    assert config["model_providers"]["mlxgw"]["base_url"] == "http://10.0.0.2:9000/v1"


def test_clients_opencode_prints_the_provider_block(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clients", "opencode", "--config", str(ROOT / "gateway.yaml")]) == 0
    block = json.loads(capsys.readouterr().out)
    provider = block["provider"]["mlxgw"]
    assert provider["npm"] == "@ai-sdk/openai" and provider["options"]["apiKey"] == "{env:MLXGW_API_KEY}"
    assert block["model"] == "mlxgw/scripted" and set(provider["models"]) == {"scripted", "demo", "echo", "tiny"}
    assert main(["clients", "opencode", "--chat", "--config", str(ROOT / "gateway.yaml")]) == 0
    assert json.loads(capsys.readouterr().out)["provider"]["mlxgw"]["npm"] == "@ai-sdk/openai-compatible"


def test_chat_is_refused_for_codex(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Codex speaks only /v1/responses to the gateway: `--chat` cannot be honoured, so it is an error, not ignored."""
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    with pytest.raises(SystemExit) as stopped:
        main(["clients", "codex", "--chat", "--config", str(ROOT / "gateway.yaml")])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert "--chat applies to opencode only" in captured.err and captured.out == ""
    assert not (tmp_path / "codex").exists()  # refused before anything was written


def test_into_needs_install(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["clients", "opencode", "--into", "x.json", "--config", str(ROOT / "gateway.yaml")])
    assert stopped.value.code == 2 and "--into goes with --install" in capsys.readouterr().err


def test_codex_config_toml_is_valid_for_every_name(mixed: GatewayConfig) -> None:
    config = tomllib.loads(codex_config_toml(mixed, "http://127.0.0.1:8080/v1", "/tmp/catalog.json"))
    assert set(config["profiles"]) == {"scripted", "demo", "tiny", "plain", "p", "coder", "remote"}
    assert all(p["model_provider"] == "mlxgw" for p in config["profiles"].values())
