"""`gateway run` on the shipped manifest serves its dummy MLX model on a fresh, offline machine."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.adapters.mlx.conftest import pid_alive
from tests.conftest import ROOT
from tests.process import GatewayProcess, environ

pytestmark = pytest.mark.mlx


def test_gateway_run_answers_with_the_shipped_dummy_model(tmp_path: Path) -> None:
    env = environ(HF_HUB_OFFLINE="1", HF_HOME=tmp_path / "hf", MLXGW_CACHE_DIR=tmp_path / "cache",
                  HOME=tmp_path / "home")
    gateway = GatewayProcess(ROOT / "gateway.yaml", tmp_path / "gateway.log", env=env, cwd=tmp_path)
    with gateway:
        answer = httpx.post(f"{gateway.base}/v1/responses", timeout=60,
                            json={"model": "tiny", "input": "hello", "max_output_tokens": 8}).json()
        assert answer["status"] in ("completed", "incomplete") and answer["model"] == "tiny"
        assert 1 <= answer["usage"]["output_tokens"] <= 8 and answer["usage"]["input_tokens"] > 1
        state = httpx.get(f"{gateway.base}/health", timeout=5).json()["models"]["tiny"]
        assert state["state"] == "ready" and state["tool_parser"] == "json_tools"
        worker = state["pid"]
        assert list((tmp_path / "cache").glob("dummy-*/model.safetensors"))  # built here, from nothing
    assert gateway.process.returncode in (0, -15), gateway.log()[-2000:]
    assert '"event":"mlx_worker_ready"' in gateway.log()
    assert not pid_alive(worker)  # the worker went down with the gateway
