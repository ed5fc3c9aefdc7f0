"""The README's quickstart is what CI runs, and what it documents exists."""

from __future__ import annotations

import re

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
