"""`mlx.allowed_paths` is enforced by the worker as it loads, on the resolved directory: a symlink swapped after
the manifest was checked cannot point a model at files outside the allowed directories."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.adapters.mlx.dummy import dummy_dir
from gateway.adapters.mlx.source import LoadError, local_model_dir, within_allowed
from gateway.config import DummyArch, parse_config
from tests.adapters.mlx.conftest import pid_alive
from tests.conftest import serve
from tests.process import wait_for


def model_dirs(mlx_cache: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(allowed root, a model inside it, a model outside it): copies of the session's dummy model."""
    allowed = tmp_path / "allowed"
    inside, outside = allowed / "model", tmp_path / "outside" / "model"
    for target in (inside, outside):
        shutil.copytree(dummy_dir(DummyArch(), mlx_cache), target)
    return allowed, inside, outside


def repoint(link: Path, target: Path) -> None:
    """Swap where `link` points, atomically (as a deploy script flipping a `current` link would)."""
    fresh = link.with_name(link.name + ".new")
    fresh.symlink_to(target)
    os.replace(fresh, link)


@pytest.mark.mlx
def test_a_symlink_swapped_outside_the_allowed_paths_is_refused_at_the_next_load(
    mlx_cache: Path, tmp_path: Path
) -> None:
    allowed, inside, outside = model_dirs(mlx_cache, tmp_path)
    link = allowed / "current"
    link.symlink_to(inside)
    manifest = (
        f"mlx: {{cache_dir: {json.dumps(str(mlx_cache))}, allowed_paths: [{json.dumps(str(allowed))}]}}\n"
        f"models:\n  - {{name: linked, adapter: mlx, source: {json.dumps(str(link))}, testing: {{force: last_user}}}}\n"
    )
    with serve(parse_config(manifest)) as url:  # the manifest check passes: the link resolves inside

        def health() -> dict[str, Any]:
            return httpx.get(f"{url}/health", timeout=10).json()["models"]["linked"]  # type: ignore[no-any-return]

        def ask(text: str) -> httpx.Response:
            return httpx.post(f"{url}/v1/responses", json={"model": "linked", "input": text}, timeout=60)

        first = ask("from inside")
        assert first.status_code == 200 and first.json()["output"][0]["content"][0]["text"] == "from inside"
        pid = health()["pid"]

        repoint(link, outside)
        os.kill(pid, signal.SIGKILL)  # the next request starts a new worker, which loads the model again
        wait_for(lambda: health()["state"] == "crashed" and not pid_alive(pid), 10, "the crash to be noticed")

        refused = ask("from outside")
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert error["code"] == "model_unavailable"
        assert str(link) in error["message"] and str(outside.resolve()) in error["message"]
        assert f"outside mlx.allowed_paths ({allowed})" in error["message"]
        state = health()
        assert state["state"] == "backoff" and state["load_failures"] == 1 and state["loads"] == 1


def test_the_resolved_directory_is_what_is_checked_and_loaded(mlx_cache: Path, tmp_path: Path) -> None:
    allowed, inside, outside = model_dirs(mlx_cache, tmp_path)
    (allowed / "in").symlink_to(inside)
    (allowed / "out").symlink_to(outside)
    assert local_model_dir(str(allowed / "in"), [str(allowed)]) == inside.resolve()
    with pytest.raises(LoadError, match=r"outside mlx\.allowed_paths"):
        local_model_dir(str(allowed / "out"), [str(allowed)])
    assert local_model_dir(str(allowed / "out"), []) == outside.resolve()  # no allowed_paths: anything
    (tmp_path / "elsewhere").symlink_to(allowed)  # an allowed root reached through a symlink is still allowed
    assert local_model_dir(str(allowed / "in"), [str(tmp_path / "elsewhere")]) == inside.resolve()
    (allowed / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(LoadError, match="no model directory at"):
        local_model_dir(str(allowed / "dangling"), [str(allowed)])
    assert within_allowed(allowed.resolve(), [str(allowed)]) and not within_allowed(tmp_path.resolve(), [str(allowed)])
