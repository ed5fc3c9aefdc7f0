from __future__ import annotations

from gateway.config import parse_config
from gateway.policies.select import matching_profiles, select_rules

MANIFEST = """
models:
  - {name: a, adapter: scripted, policy: strict, script: {mode: echo}}
  - {name: b, aliases: [bee], adapter: scripted, script: {mode: echo}}
policies:
  default:
    tools: {hosted: drop, names: {apply_patch: wrap}}
    items: {unknown: drop}
  strict:
    tools: {custom: reject, types: {web_search: reject}}
  codex:
    tools: {hosted: note, names: {apply_patch: note}}
  codex-on-b:
    items: {reasoning: drop}
clients:
  - {name: codex-b, match: {originator: "^codex"}, policy: codex-on-b, models: [bee]}
  - {name: codex, match: {originator: "^codex_", User-Agent: "codex"}, policy: codex}
"""

CODEX = {"Originator": "codex_exec", "user-agent": "codex_exec/0.169.0 (Debian)"}


def config():  # type: ignore[no-untyped-def]
    return parse_config(MANIFEST)


def test_defaults_then_the_model_policy() -> None:
    cfg = config()
    rules = select_rules(cfg, cfg.models[0], {})
    assert rules.layers == ("default", "strict")
    assert rules.tools.hosted == "drop" and rules.tools.custom == "reject"
    assert rules.tools.function == "native"  # built-in default
    assert rules.tools.names == {"apply_patch": "wrap"} and rules.tools.types == {"web_search": "reject"}
    assert rules.items.unknown == "drop" and rules.items.reasoning == "keep"


def test_client_profiles_apply_on_top_most_specific_last() -> None:
    cfg = config()
    rules = select_rules(cfg, cfg.models[1], CODEX)
    assert rules.layers == ("default", "client:codex", "client:codex-b")
    assert rules.tools.hosted == "note"
    assert rules.tools.names == {"apply_patch": "note"}
    assert rules.items.reasoning == "drop" and rules.items.unknown == "drop"


def test_profiles_need_every_header_to_match_and_the_model() -> None:
    cfg = config()
    assert [p.name for p in matching_profiles(cfg.clients, cfg.models[0], CODEX)] == ["codex"]
    assert matching_profiles(cfg.clients, cfg.models[0], {"originator": "codex_exec"}) == []
    assert matching_profiles(cfg.clients, cfg.models[1], {"user-agent": "opencode/1.18"}) == []
    assert [p.name for p in matching_profiles(cfg.clients, cfg.models[1], {"ORIGINATOR": "Codex_tui"})] == ["codex-b"]


def test_no_policies_means_built_in_defaults() -> None:
    cfg = parse_config("models: [{name: m, adapter: scripted, script: {mode: echo}}]")
    rules = select_rules(cfg, cfg.models[0], CODEX)
    assert rules.layers == ()
    assert (rules.tools.function, rules.tools.custom, rules.tools.namespace, rules.tools.hosted, rules.tools.unknown) == (
        "native", "wrap", "expand", "note", "note")
    assert (rules.items.unknown, rules.items.reasoning, rules.items.images) == ("text", "keep", "note")
