from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return str(path)


def test_check_accepts_the_shipped_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(ROOT / "gateway.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok (3 model(s): scripted, echo, tiny; store memory://)" in out


def test_check_prints_every_problem_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "server: {port: x}\nmodels: [{name: a, adapter: scripted, source: nope}]\n")
    assert main(["check", "--config", path]) == 1
    err = capsys.readouterr().err
    assert f"{path}: invalid manifest (2 problem(s))" in err
    assert "  server.port: Expected `int`, got `str`" in err
    assert "  models[0].source: unknown key" in err


def test_models_lists_names_aliases_and_adapters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--config", str(ROOT / "gateway.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ADAPTER", "ALIASES", "CONTEXT", "POLICY"]
    assert lines[1].split() == ["scripted", "scripted", "demo", "32768", "default"]


def test_run_refuses_an_invalid_manifest_without_starting(tmp_path: Path) -> None:
    path = write(tmp_path, "store: {url: 'ftp://x'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--config", path, "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "store.url: unsupported URL 'ftp://x'" in result.stderr
    assert "Uvicorn running" not in result.stderr


def test_missing_manifest_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(tmp_path / "absent.yaml")]) == 1
    assert "cannot read the manifest" in capsys.readouterr().err


def test_run_serves_until_terminated(tmp_path: Path) -> None:
    """`gateway run` answers, then stops cleanly on SIGTERM."""
    import httpx

    from tests.process import GatewayProcess

    gateway = GatewayProcess(ROOT / "gateway.yaml", tmp_path / "gateway.log")
    with gateway:
        assert httpx.get(f"{gateway.base}/health", timeout=5).json()["status"] == "ok"
        answer = httpx.post(f"{gateway.base}/v1/responses", json={"model": "demo", "input": "hi"}, timeout=10)
        assert answer.json()["status"] == "completed"
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status shows the signal.
    assert gateway.process.returncode in (0, -15)
    log = gateway.log()
    assert "Application shutdown complete" in log
    assert '"event":"request"' in log and '"path":"/v1/responses"' in log


def test_pull_builds_a_dummy_and_reports_missing_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = write(tmp_path, f"""
mlx: {{cache_dir: "{tmp_path / 'cache'}"}}
models:
  - {{name: tiny, adapter: mlx, source: dummy, dummy: {{hidden_size: 32, layers: 1, heads: 2, kv_heads: 1,
      intermediate_size: 64, vocab_size: 512}}}}
  - {{name: remote, adapter: mlx, source: "hf:example-org/not-cached-model"}}
  - {{name: local, adapter: mlx, source: "{tmp_path / 'nowhere'}"}}
  - {{name: scripted, adapter: scripted, script: {{mode: echo}}}}
""")
    assert main(["pull", "tiny", "--config", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny: ready at ") and (tmp_path / "cache").is_dir()
    built = Path(out.split("ready at ", 1)[1].strip())
    assert (built / "model.safetensors").is_file() and (built / "tokenizer.json").is_file()
    assert main(["pull", "remote", "--config", path]) == 1
    assert "not in the Hugging Face cache and the hub cannot be reached" in capsys.readouterr().err
    assert main(["pull", "local", "--config", path]) == 1
    assert "no model directory at" in capsys.readouterr().err
    assert main(["pull", "scripted", "--config", path]) == 0
    assert "has no files to pull" in capsys.readouterr().out
    assert main(["pull", "nope", "--config", path]) == 1
