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
    assert "ok (2 model(s): scripted, echo; store memory://)" in out


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
    """`gateway run` on a free port answers /health, then stops cleanly on SIGTERM."""
    import socket
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(ROOT / "gateway.yaml"), "--port", str(port),
         "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "gateway run did not come up"
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/responses", json={"model": "demo", "input": "hi"}, timeout=10)
        assert answer.json()["status"] == "completed"
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status shows the signal.
    assert process.returncode in (0, -15)
    assert "Application shutdown complete" in err
    assert '"event":"request"' in err and '"path":"/v1/responses"' in err
