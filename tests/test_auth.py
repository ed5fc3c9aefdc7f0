from __future__ import annotations

import pytest

from gateway.access import identify
from gateway.auth import authenticate, is_loopback, matches_admin, public_bind_problem, unset_key_variables
from gateway.config import parse_config
from gateway.errors import AuthenticationFailed

MANIFEST = """
models:
  - {name: a, aliases: [alpha], adapter: scripted, script: {mode: echo}}
  - {name: b, adapter: scripted, script: {mode: echo}}
auth:
  admin_key_env: T_ADMIN
  keys:
    - {name: everything, env: T_ALL}
    - {name: only-a, env: T_A, models: [alpha]}
    - {name: unset, env: T_UNSET}
"""
ENV = {"T_ALL": "all-secret", "T_A": "a-secret", "T_ADMIN": "admin-secret"}


def config():  # type: ignore[no-untyped-def]
    return parse_config(MANIFEST)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_open_api_without_keys() -> None:
    assert authenticate(parse_config("models: []"), {}, ENV) is None


@pytest.mark.parametrize("headers", [{}, {"authorization": "Basic abc"}, bearer("wrong"), bearer("")])
def test_missing_or_wrong_key_is_401(headers: dict[str, str]) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        authenticate(config(), headers, ENV)
    assert info.value.status == 401


def test_a_key_whose_variable_is_unset_never_matches() -> None:
    with pytest.raises(AuthenticationFailed):
        authenticate(config(), bearer(""), {**ENV, "T_UNSET": ""})
    assert unset_key_variables(config(), ENV) == ["T_UNSET"]


def test_keys_and_their_models() -> None:
    cfg = config()
    everything = identify(cfg, bearer("all-secret"), ENV)
    only_a = identify(cfg, bearer("a-secret"), ENV)
    assert (everything.key.name, only_a.key.name) == ("everything", "only-a")  # type: ignore[union-attr]
    assert everything.may_use(cfg.models[1]) and everything.sees_everything
    assert only_a.may_use(cfg.models[0])  # allowed through its alias
    assert not only_a.may_use(cfg.models[1]) and not only_a.sees_everything
    assert only_a.may_read("a", cfg) and not only_a.may_read("b", cfg)
    assert not only_a.may_read(None, cfg)  # data of no known model is for full views only
    assert only_a.may_read("alpha", cfg)  # a model the manifest no longer serves: matched by the listed name


def test_admin_key() -> None:
    assert matches_admin(config(), bearer("admin-secret"), ENV)
    assert identify(config(), bearer("admin-secret"), ENV).kind == "admin"
    assert not matches_admin(config(), bearer("all-secret"), ENV)  # an API key is not an admin key
    assert not matches_admin(config(), bearer("admin-secret"), {})  # admin endpoints disabled: nothing matches
    assert identify(config(), {}, ENV).kind == "anonymous"
    assert identify(parse_config("models: []"), {}, ENV).kind == "open"


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
                                                ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                                ("::", False), ("192.168.1.20", False), ("example.com", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_public_bind_needs_a_usable_key_or_an_explicit_opt_in() -> None:
    open_config = parse_config("models: []")
    assert public_bind_problem(open_config, "127.0.0.1", {}) is None
    assert "refusing to listen on 0.0.0.0" in public_bind_problem(open_config, "0.0.0.0", {})
    assert public_bind_problem(config(), "0.0.0.0", ENV) is None
    assert public_bind_problem(config(), "0.0.0.0", {}) is not None  # keys configured but none set
    forced = parse_config("server: {allow_public_without_keys: true}")
    assert public_bind_problem(forced, "0.0.0.0", {}) is None
