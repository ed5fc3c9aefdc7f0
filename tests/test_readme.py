"""The README's quickstart is what CI runs, and what it documents exists."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT


def quickstart() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quickstart_is_exactly_two_commands() -> None:
    commands = quickstart()
    assert len(commands) == 2
    assert commands[0].endswith("gateway run")
    assert all("\n" not in c for c in commands)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert quickstart()[1] in ci


def test_readme_manifest_keys_exist() -> None:
    from gateway.config import GatewayConfig, ServerConfig, StoreConfig

    text = (ROOT / "README.md").read_text()
    for struct in (GatewayConfig, ServerConfig, StoreConfig):
        for field in struct.__struct_fields__:
            assert f"{field}:" in text, f"README does not document {struct.__name__}.{field}"


# ------------------------------------------------------------------ "Point Codex and OpenCode at it", run as written

CLIENTS = ("codex", "opencode")  # lines running the clients themselves: tests/e2e runs them against a live gateway


def client_setup_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Point Codex and OpenCode at it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.+?)\n```", section, re.DOTALL)
    assert len(blocks) == 1, "the section holds exactly one sh block"
    return blocks[0].splitlines()


def gateway_lines() -> list[str]:
    """The block's lines minus the `codex` / `opencode` runs (which need a gateway serving and the clients)."""
    lines = client_setup_block()
    skipped = [line for line in lines if line.split()[0] in CLIENTS]
    assert [line.split()[0] for line in skipped] == list(CLIENTS), skipped
    return [line for line in lines if line not in skipped]


def run_as_a_new_user(home: Path) -> subprocess.CompletedProcess[str]:
    """The block's gateway lines, verbatim, in `sh` from the clone after the Quickstart: a fresh HOME, no
    CODEX_HOME / XDG_CONFIG_HOME / MLXGW_CONFIG, and nothing called `gateway` on PATH."""
    path = os.pathsep.join(d for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
                           if d and not (Path(d) / "gateway").exists())
    env = {"HOME": str(home), "PATH": path, "LANG": "C.UTF-8", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(home / ".cache" / "huggingface"), "MLXGW_CACHE_DIR": str(home / ".cache" / "mlx-gateway")}
    script = "set -e\n" + "\n".join(gateway_lines()) + "\n"
    return subprocess.run(["sh", "-c", script], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_client_setup_block_works_verbatim_in_a_fresh_home(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "gateway").exists():
        pytest.skip("the Quickstart's .venv is not in the clone (CI creates it with the README's test command)")
    home = tmp_path / "home"
    home.mkdir()
    first = run_as_a_new_user(home)
    assert first.returncode == 0, first.stderr
    codex = home / ".codex"
    config = tomllib.loads((codex / "config.toml").read_text())
    catalog = json.loads((codex / "mlx-gateway-models.json").read_text())
    assert config["model_provider"] == "mlxgw" and config["model"] == "scripted"
    assert config["model_catalog_json"] == str((codex / "mlx-gateway-models.json").resolve())
    assert config["model_providers"]["mlxgw"]["base_url"] == "http://127.0.0.1:8080/v1"
    assert {"scripted", "demo", "echo", "tiny"} <= set(config["profiles"])
    assert [m["slug"] for m in catalog["models"]] == ["scripted", "demo", "echo", "tiny"]
    opencode_file = home / ".config" / "opencode" / "opencode.json"
    opencode = json.loads(opencode_file.read_text())
    assert opencode["model"] == "mlxgw/scripted" and "demo" in opencode["provider"]["mlxgw"]["models"]
    assert "created" in first.stdout

    # The user's own settings, then the block again (a second install): theirs survive, ours come back.
    ours = (codex / "config.toml").read_text()
    mine = ('# my settings\napprover = "me"\napproval_policy = "never"  # keep this comment\n'
            + ours.replace('model = "scripted"\nmodel_provider', 'model = "gpt-5"\nmodel_provider', 1)
            + '\n[mcp_servers.docs]\ncommand = "docs-server"\n\n[profiles.work]\nmodel = "o3"\n')
    (codex / "config.toml").write_text(mine)
    opencode["theme"] = "dark"
    opencode["provider"]["other"] = {"npm": "@ai-sdk/anthropic"}
    opencode_file.write_text(json.dumps(opencode))
    second = run_as_a_new_user(home)
    assert second.returncode == 0, second.stderr
    text = (codex / "config.toml").read_text()
    merged = tomllib.loads(text)
    assert merged["approval_policy"] == "never" and merged["approver"] == "me"
    assert "# my settings" in text and "# keep this comment" in text
    assert merged["mcp_servers"] == {"docs": {"command": "docs-server"}}
    assert merged["profiles"]["work"] == {"model": "o3"}
    assert merged["model"] == "scripted" and merged["model_provider"] == "mlxgw"
    backups = sorted(codex.glob("config.toml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == mine
    assert 'model: "gpt-5" -> "scripted"' in second.stdout
    reopened = json.loads(opencode_file.read_text())
    assert reopened["theme"] == "dark" and reopened["provider"]["other"] == {"npm": "@ai-sdk/anthropic"}
    assert len(list(opencode_file.parent.glob("opencode.json.bak-*"))) == 1
