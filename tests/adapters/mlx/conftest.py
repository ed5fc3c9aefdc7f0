"""Fixtures for tests that run dummy models through real mlx-lm worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, parse_config

os.environ["HF_HUB_OFFLINE"] = "1"  # inherited by spawned workers: nothing may reach the hub


@pytest.fixture(scope="session")
def mlx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir holding the default dummy model, built once per session (in a subprocess: no MLX here)."""
    cache = tmp_path_factory.mktemp("mlx-cache")
    subprocess.run(
        [sys.executable, "-m", "gateway.adapters.mlx.dummy", "--cache-dir", str(cache)],
        check=True, capture_output=True, timeout=120,
    )
    return cache


@pytest.fixture
def mlx_config(mlx_cache: Path) -> Callable[[str], GatewayConfig]:
    """A manifest from YAML text, with the session's dummy cache."""

    def make(text: str) -> GatewayConfig:
        return parse_config(f"mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}\n{text}")

    return make


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
