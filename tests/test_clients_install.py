"""`gateway clients codex|opencode --install`: the user's config file is merged into, never replaced."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.clients.install import InstallError, backup_path, merge_codex, merge_opencode
from tests.conftest import ROOT

MANIFEST = str(ROOT / "gateway.yaml")

USER_TOML = """\
# my Codex settings
model = "gpt-5"                 # my usual model
approval_policy = "on-request"
model_reasoning_effort = "high"

[mcp_servers.docs]
command = "docs-server"
args = ["--port", "3000"]

[profiles.work]
model = "o3"

[profiles."retired"]            # written by an earlier install for a model no longer served
model = "retired"
model_provider = "mlxgw"

[tui]
notifications = true
"""


@pytest.fixture
def codex_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "codex-home"
    monkeypatch.setenv("CODEX_HOME", str(home))
    return home


def install(*args: str) -> int:
    return main(["clients", *args, "--install", "--config", MANIFEST])


def test_install_creates_the_directory_config_and_catalog(codex_home: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert not codex_home.exists()
    assert install("codex") == 0
    out = capsys.readouterr().out
    config = tomllib.loads((codex_home / "config.toml").read_text())
    catalog = codex_home / "mlx-gateway-models.json"
    assert config["model"] == "scripted" and config["model_catalog_json"] == str(catalog.resolve())
    assert json.loads(catalog.read_text())["models"][0]["slug"] == "scripted"
    assert f"{codex_home / 'config.toml'}: created" in out
    assert f"{catalog}: wrote the model catalog (4 model(s): scripted, demo, echo, tiny)" in out
    assert not list(codex_home.glob("*.bak-*"))  # nothing to back up


def test_install_merges_keeps_the_users_settings_and_backs_up(codex_home: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(USER_TOML)
    os.chmod(codex_home / "config.toml", 0o600)
    assert install("codex") == 0
    out = capsys.readouterr().out
    text = (codex_home / "config.toml").read_text()
    merged = tomllib.loads(text)
    # the user's keys, values, comments and tables survive
    assert merged["approval_policy"] == "on-request" and merged["model_reasoning_effort"] == "high"
    assert merged["mcp_servers"]["docs"] == {"command": "docs-server", "args": ["--port", "3000"]}
    assert merged["profiles"]["work"] == {"model": "o3"} and merged["tui"] == {"notifications": True}
    assert "# my Codex settings" in text and '[mcp_servers.docs]\ncommand = "docs-server"' in text
    # the gateway's keys are set, its stale profile is gone
    assert merged["model"] == "scripted" and merged["model_provider"] == "mlxgw"
    assert merged["model_providers"]["mlxgw"]["env_key"] == "MLXGW_API_KEY"
    assert {"scripted", "demo", "echo", "tiny", "work"} == set(merged["profiles"])
    # the old file, byte for byte, with the permissions kept on the new one
    backups = list(codex_home.glob("config.toml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == USER_TOML
    assert stat.S_IMODE((codex_home / "config.toml").stat().st_mode) == 0o600
    # and what changed, said
    assert f"backed up the previous file to {backups[0]}" in out
    assert 'model: "gpt-5" -> "scripted"' in out
    assert 'model_provider: set to "mlxgw"' in out
    assert "[model_providers.mlxgw]: added" in out and "[profiles.demo]: added" in out
    assert "[profiles.retired]: removed (no longer served)" in out
    assert "kept: approval_policy, model_reasoning_effort, mcp_servers, profiles.work, tui" in out


def test_a_second_install_changes_nothing_and_backs_up_nothing(codex_home: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(USER_TOML)
    assert install("codex") == 0
    first = (codex_home / "config.toml").read_text()
    capsys.readouterr()
    assert install("codex") == 0
    assert f"{codex_home / 'config.toml'}: unchanged" in capsys.readouterr().out
    assert (codex_home / "config.toml").read_text() == first
    assert len(list(codex_home.glob("config.toml.bak-*"))) == 1


def test_an_invalid_config_is_left_alone(codex_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    codex_home.mkdir()
    (codex_home / "config.toml").write_text("model = \n[broken\n")
    assert install("codex") == 1
    assert "not valid TOML" in capsys.readouterr().err
    assert (codex_home / "config.toml").read_text() == "model = \n[broken\n"
    assert not list(codex_home.glob("*.bak-*"))


def test_merge_refuses_what_it_cannot_express() -> None:
    with pytest.raises(InstallError, match="'profiles' is not a table"):
        merge_codex('profiles = "oops"\n', '[profiles."a"]\nmodel = "a"\n')


def test_backups_never_overwrite_each_other(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    first = backup_path(target, now=0)
    first.write_text("x")
    second = backup_path(target, now=0)
    assert second != first and second.name == f"{first.name}-1"


def test_opencode_install_merges_into_the_global_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    target = tmp_path / "xdg" / "opencode" / "opencode.json"
    assert install("opencode") == 0
    created = json.loads(target.read_text())
    assert created["provider"]["mlxgw"]["npm"] == "@ai-sdk/openai" and created["model"] == "mlxgw/scripted"
    assert f"{target}: created" in capsys.readouterr().out

    mine: dict[str, Any] = {"$schema": "https://opencode.ai/config.json", "theme": "dark", "model": "anthropic/claude",
            "provider": {"anthropic": {"options": {"apiKey": "{env:ANTHROPIC_API_KEY}"}}},
            "mcp": {"docs": {"type": "local", "command": ["docs"]}}}
    target.write_text(json.dumps(mine, indent=2))
    assert install("opencode") == 0
    out = capsys.readouterr().out
    merged = json.loads(target.read_text())
    assert merged["theme"] == "dark" and merged["mcp"] == mine["mcp"]
    assert merged["provider"]["anthropic"] == mine["provider"]["anthropic"]
    assert merged["provider"]["mlxgw"] == created["provider"]["mlxgw"] and merged["model"] == "mlxgw/scripted"
    assert 'model: "anthropic/claude" -> "mlxgw/scripted"' in out and "provider.mlxgw: added" in out
    assert "kept: theme, mcp, provider.anthropic" in out
    backups = list(target.parent.glob("opencode.json.bak-*"))
    assert len(backups) == 1 and json.loads(backups[0].read_text()) == mine


def test_opencode_install_into_a_project_file_with_chat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "project" / "opencode.json"
    assert main(["clients", "opencode", "--chat", "--install", "--into", str(target), "--config", MANIFEST]) == 0
    assert json.loads(target.read_text())["provider"]["mlxgw"]["npm"] == "@ai-sdk/openai-compatible"
    assert f"{target}: created" in capsys.readouterr().out


def test_opencode_jsonc_is_refused_rather_than_rewritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "opencode.json"
    target.write_text('{\n  // my comment\n  "theme": "dark"\n}\n')
    assert main(["clients", "opencode", "--install", "--into", str(target), "--config", MANIFEST]) == 1
    assert "comments are not supported" in capsys.readouterr().err
    assert "// my comment" in target.read_text()


def test_merge_opencode_keeps_an_existing_schema() -> None:
    generated = {"$schema": "https://opencode.ai/config.json", "provider": {"mlxgw": {"models": {}}},
                 "model": "mlxgw/a", "small_model": "mlxgw/a"}
    text, changes, kept = merge_opencode('{"$schema": "https://example.test/schema.json"}', generated)
    assert json.loads(text)["$schema"] == "https://example.test/schema.json"
    assert not any(change.startswith("$schema") for change in changes) and kept == []
