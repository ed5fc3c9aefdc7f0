from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.config import ConfigError, ScriptedModel, load_config, parse_config
from tests.conftest import ROOT


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_shipped_manifest_is_valid_and_serves_an_offline_model() -> None:
    config = load_config(ROOT / "gateway.yaml")
    assert config.server.host == "127.0.0.1"
    assert config.store.url == "memory://"
    assert any(isinstance(m, ScriptedModel) for m in config.models)


def test_empty_manifest_gets_defaults() -> None:
    config = parse_config("")
    assert config.server.port == 8080
    assert config.server.host == "127.0.0.1"
    assert config.store.url == "memory://"
    assert config.models == []


def test_config_is_frozen() -> None:
    config = parse_config("server: {port: 9000}")
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]


def test_every_structural_problem_is_reported_with_its_path() -> None:
    found = problems(
        """
server: {port: "x", hots: 1}
models:
  - name: a
    adapter: scripted
    script: {steps: [{text: hi}]}
  - name: b
    adapter: nosuch
  - adapter: scripted
    nme: 3
    script: {mode: x}
"""
    )
    assert any(p.startswith("server.hots: unknown key (known keys: host, port, max_body_bytes,") for p in found)
    assert "server.port: Expected `int`, got `str`" in found
    assert "models[1].adapter: expected one of 'scripted', 'mlx', 'upstream', got 'nosuch'" in found
    assert any(p.startswith("models[2].nme: unknown key") for p in found)
    assert "models[2].name: required" in found
    assert "models[2].script.mode: Invalid enum value 'x' (allowed: steps, echo)" in found
    assert len(found) == 6


def test_type_and_cross_reference_problems_come_in_one_pass() -> None:
    found = problems(
        """
models:
  - {name: a, adapter: scripted, policy: nope, context_length: big, script: {steps: [{text: hi}]}}
  - {name: a, adapter: scripted, script: {steps: [{text: hi}]}}
  - {name: gone, adapter: mlxx}
  - {name: c, adapter: scripted, script: {mode: x}}
policies:
  default: {tools: {function: explode}}
clients:
  - {name: codex, match: {originator: "^codex"}, policy: nope, models: [gone, zz]}
store: {url: "http://x"}
"""
    )
    assert found == [
        # the type problems first, enums with their allowed values
        "models[0].context_length: Expected `int`, got `str`",
        "models[2].adapter: expected one of 'scripted', 'mlx', 'upstream', got 'mlxx'",
        "models[3].script.mode: Invalid enum value 'x' (allowed: steps, echo)",
        "policies.default.tools.function: Invalid enum value 'explode' (allowed: native, wrap, expand, drop, note, "
        "reject)",
        # then what the cross-checks find in the rest, at the paths as written (models[3] keeps its index
        # though models[2] was set aside); nothing about the set-aside model 'gone', nothing caused by a default
        # standing in (models[3]'s script would otherwise be an empty `steps` script)
        "models[0].policy: unknown policy 'nope' (known: default)",
        "models[1].name: 'a' is already used by models[0].name",
        "clients[0].policy: unknown policy 'nope'",
        "clients[0].models[1]: unknown model 'zz'",
        "store.url: unsupported URL 'http://x' (use one of: memory://, redis://, redis+cluster://, "
        "redis+sentinel://, rediss://, rediss+cluster://, rediss+sentinel://, unix://)",
    ]


def test_cross_checks_report_list_indices_as_written() -> None:
    found = problems(
        """
models:
  - {name: x, adapter: nosuch}
  - {name: y, adapter: nosuch}
  - {name: a, adapter: scripted, script: {steps: [{text: hi}]}}
  - {name: a, adapter: scripted, script: {steps: [{text: hi}]}}
"""
    )
    assert found[2:] == ["models[3].name: 'a' is already used by models[2].name"]


def test_semantic_problems_are_reported_with_paths() -> None:
    found = problems(
        """
store: {url: "mysql://x"}
models:
  - name: a
    adapter: scripted
    script: {steps: [{text: hi}]}
  - name: b
    aliases: [a]
    adapter: scripted
    policy: nope
    script:
      steps:
        - calls: [{function: f, custom: g}]
        - {}
"""
    )
    assert found == [
        "models[1].aliases[0]: 'a' is already used by models[0].name",
        "models[1].policy: unknown policy 'nope' (known: default)",
        "models[1].script.steps[0].calls[0]: give exactly one of 'function' or 'custom'",
        "models[1].script.steps[1]: an empty step (give text, reasoning, calls or error)",
        "store.url: unsupported URL 'mysql://x' (use one of: memory://, redis://, redis+cluster://, "
        "redis+sentinel://, rediss://, rediss+cluster://, rediss+sentinel://, unix://)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: {port: 70000}", "server.port: Expected `int` <= 65535"),
        ("server: {keepalive_seconds: 30}", "server.keepalive_seconds: Expected `float` <= 10.0"),
        ("store: {ttl_seconds: 0}", "store.ttl_seconds: Expected `int` >= 1"),
        ("models: {a: 1}", "models: Expected `array`, got `object`"),
        ("models: [{name: 'bad name', adapter: scripted, script: {mode: echo}}]",
         "models[0].name: Expected `str` matching regex '^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$'"),
        ("models: [{name: m, adapter: scripted, script: {steps: []}}]",
         "models[0].script.steps: a steps script needs at least one step"),
        ("policies: {default: {tools: {custom: expand}}}",
         "policies.default.tools.custom: 'expand' does not apply to custom tools (use one of: drop, note, reject, wrap)"),
        ("policies: {default: {tools: {function: explode}}}",
             "policies.default.tools.function: Invalid enum value 'explode' (allowed: native, wrap, expand, drop, note, reject)"),
        ("clients: [{name: c, match: {user-agent: '('}, policy: nope}]",
         "clients[0].policy: unknown policy 'nope'"),
        ("- just\n- a list", "(top level): expected a mapping, got a list"),
    ],
)
def test_single_problems(text: str, expected: str) -> None:
    assert expected in problems(text)


def test_yaml_syntax_error_names_line_and_column() -> None:
    (found,) = problems("server: [\n")
    assert found.startswith("line 2, column 1: invalid YAML: ")


def test_invalid_client_regex_is_reported() -> None:
    found = problems("policies: {p: {}}\nclients: [{name: c, match: {user-agent: '('}, policy: p}]")
    assert found[0].startswith("clients[0].match.user-agent: invalid regular expression")


def test_load_config_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.problems[0].startswith("cannot read the manifest")


def test_local_model_sources_must_be_inside_allowed_paths(tmp_path) -> None:  # type: ignore[no-untyped-def]
    inside, outside = tmp_path / "models" / "qwen", tmp_path / "elsewhere"
    manifest = f"""
mlx: {{allowed_paths: ["{tmp_path / 'models'}"]}}
models:
  - {{name: ok, adapter: mlx, source: "{inside}"}}
  - {{name: sneaky, adapter: mlx, source: "{tmp_path / 'models' / '..' / 'elsewhere'}"}}
  - {{name: out, adapter: mlx, source: "{outside}"}}
  - {{name: hub, adapter: mlx, source: "hf:org/repo"}}
"""
    found = problems(manifest)
    assert [p.split(":", 1)[0] for p in found] == ["models[1].source", "models[2].source"]
    assert "outside mlx.allowed_paths" in found[0]


def test_the_readme_example_of_a_check_is_what_check_prints(tmp_path) -> None:  # type: ignore[no-untyped-def]
    readme = (ROOT / "README.md").read_text()
    example = readme.split("```\ngateway.yaml: invalid manifest", 1)[1].split("```", 1)[0]
    manifest = tmp_path / "gateway.yaml"
    manifest.write_text(
        """
server: {port: eighty}
policies: {default: {tools: {hosted: hide}}}
models:
  - {name: a, adapter: scripted, policy: strict, script: {mode: echo}}
  - {name: b, adapter: scripted, script: {steps: [{calls: [{function: f, custom: g}]}]}}
"""
    )
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(manifest)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stdout + result.stderr == str(manifest) + ": invalid manifest" + example
