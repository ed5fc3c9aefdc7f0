"""Keys: read from the environment (never from the manifest), compared in constant time."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

from gateway.config import GatewayConfig
from gateway.errors import AuthenticationFailed, PermissionDenied

__all__ = ["bearer_token", "require_admin"]


def _secret(name: str | None, environ: Mapping[str, str]) -> str | None:
    if not name:
        return None
    value = environ.get(name, "")
    return value or None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def require_admin(config: GatewayConfig, headers: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> None:
    expected = _secret(config.auth.admin_key_env, environ)
    if expected is None:
        raise PermissionDenied(
            "Admin endpoints are disabled: set auth.admin_key_env in the manifest and that environment variable.",
            code="admin_disabled",
        )
    token = bearer_token(headers)
    if token is None:
        raise AuthenticationFailed("An admin key is required (Authorization: Bearer <key>).")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise AuthenticationFailed("The admin key is not valid.")
