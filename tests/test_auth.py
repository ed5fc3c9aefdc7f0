from __future__ import annotations

import pytest

from gateway.auth import (
    authenticate,
    authorize_model,
    is_loopback,
    public_bind_problem,
    require_admin,
    unset_key_variables,
)
from gateway.config import parse_config
from gateway.errors import AuthenticationFailed, PermissionDenied

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
    everything = authenticate(cfg, bearer("all-secret"), ENV)
    only_a = authenticate(cfg, bearer("a-secret"), ENV)
    assert (everything.name, only_a.name) == ("everything", "only-a")
    authorize_model(everything, cfg.models[1])
    authorize_model(only_a, cfg.models[0])  # allowed through its alias
    with pytest.raises(PermissionDenied) as info:
        authorize_model(only_a, cfg.models[1])
    assert info.value.status == 403 and info.value.param == "model" and "'only-a'" in info.value.message


def test_admin_key() -> None:
    require_admin(config(), bearer("admin-secret"), ENV)
    with pytest.raises(AuthenticationFailed):
        require_admin(config(), bearer("all-secret"), ENV)  # an API key is not an admin key
    with pytest.raises(PermissionDenied):
        require_admin(config(), bearer("admin-secret"), {})


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
