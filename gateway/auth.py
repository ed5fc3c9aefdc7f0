"""Keys: read from the environment (never from the manifest), compared in constant time.

With no `auth.keys` in the manifest the API is open (fine on loopback, which is the
default bind); with keys, every API request needs one, and a key can be limited to
some models. Admin endpoints always need the admin key. Which route needs which key is
decided in `access.py`.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping

from gateway.config import ApiKey, GatewayConfig, ModelSpec
from gateway.errors import AuthenticationFailed

__all__ = [
    "authenticate",
    "bearer_token",
    "is_loopback",
    "key_allows",
    "matches_admin",
    "public_bind_problem",
    "unset_key_variables",
]


def _secret(name: str | None, environ: Mapping[str, str]) -> str | None:
    if not name:
        return None
    return environ.get(name, "") or None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _matches(token: str, secret: str | None) -> bool:
    return secret is not None and hmac.compare_digest(token.encode(), secret.encode())


def authenticate(config: GatewayConfig, headers: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> ApiKey | None:
    """The API key a request presents; None when the manifest configures no keys (open API)."""
    if not config.auth.keys:
        return None
    token = bearer_token(headers)
    if token is None:
        raise AuthenticationFailed("An API key is required (Authorization: Bearer <key>).")
    found = None
    for key in config.auth.keys:  # compare against every key: the time taken does not say which one matched
        if _matches(token, _secret(key.env, environ)):
            found = key
    if found is None:
        raise AuthenticationFailed("The API key is not valid.")
    return found


def key_allows(key: ApiKey | None, model: ModelSpec) -> bool:
    """Whether a key may use `model` (by its name or any alias); no key or no list means any model."""
    return key is None or not key.models or bool({model.name, *model.aliases} & set(key.models))


def matches_admin(config: GatewayConfig, headers: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the request presents the admin key (never true while admin endpoints are disabled)."""
    token = bearer_token(headers)
    return token is not None and _matches(token, _secret(config.auth.admin_key_env, environ))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def unset_key_variables(config: GatewayConfig, environ: Mapping[str, str] = os.environ) -> list[str]:
    return [key.env for key in config.auth.keys if _secret(key.env, environ) is None]


def public_bind_problem(config: GatewayConfig, host: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why listening on `host` would expose an open API, or None if it is fine."""
    if is_loopback(host) or config.server.allow_public_without_keys:
        return None
    usable = [key for key in config.auth.keys if _secret(key.env, environ) is not None]
    if usable:
        return None
    return (
        f"refusing to listen on {host}: that address is reachable from other machines and no API key is configured "
        "(add auth.keys with their environment variables set, or set server.allow_public_without_keys: true)"
    )
