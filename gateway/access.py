"""Who may reach which route, decided on the route that matched, never on the raw path.

Every route handler declares one `Access` level in its `opt`; one Litestar guard (`guard`)
reads it after routing, so `//v1/models`, `/%2Fv1/...` or any other spelling that reaches
a handler meets that handler's rule. A handler that declares nothing is refused at start-up
(`check_routes`), so a new route cannot be open by accident.

The guard leaves a `Caller` in the request state: which key (if any) the request presented,
and from it which models' data it may see. Routes ask the caller, not the headers.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.auth import authenticate, bearer_token, key_allows, matches_admin
from gateway.config import ApiKey, GatewayConfig, ModelSpec
from gateway.errors import AuthenticationFailed, GatewayError, PermissionDenied, ServiceUnavailable

__all__ = ["ACCESS", "Access", "Caller", "caller_of", "check_routes", "guard", "identify"]

ACCESS = "access"  # the key of a handler's `opt` that holds its Access


class Access(enum.Enum):
    PUBLIC = "public"  # anyone; the answer may say more to a caller with a key
    CLIENT = "client"  # an API key, when keys are configured (the /v1/ API)
    ANY_KEY = "any_key"  # an API key or the admin key, when keys are configured; answers show what it may see
    OPERATOR = "operator"  # the admin key or an API key limited to no model, when keys are configured
    ADMIN = "admin"  # the admin key, always


class Caller:
    """What one request may see. `kind`: `open` (no keys configured), `anonymous`, `client`, `admin`."""

    def __init__(self, kind: str, key: ApiKey | None = None) -> None:
        self.kind = kind
        self.key = key

    @property
    def sees_everything(self) -> bool:
        """Every model's data: an open API, the admin key, or an API key limited to no model."""
        return self.kind in ("open", "admin") or (self.kind == "client" and self.key is not None and not self.key.models)

    @property
    def owner(self) -> str:
        """Whose conversations this caller creates and sees: its key's name ('' on an open API)."""
        return self.key.name if self.key is not None else ""

    @property
    def identified(self) -> bool:
        return self.kind != "anonymous"

    def may_use(self, model: ModelSpec) -> bool:
        return self.sees_everything or (self.kind == "client" and key_allows(self.key, model))

    def may_read(self, model_name: str | None, config: GatewayConfig) -> bool:
        """Whether data of a stored response or a log entry of `model_name` is visible.

        A stored response names its model's canonical name; a model the manifest no longer
        serves is matched by that name only. Data of no known model is for full views only.
        """
        if self.sees_everything:
            return True
        if self.kind != "client" or model_name is None:
            return False
        served = next((m for m in config.models if m.name == model_name), None)
        return key_allows(self.key, served) if served is not None else model_name in (self.key.models if self.key else [])

    def visible_models(self, config: GatewayConfig) -> list[ModelSpec]:
        return [model for model in config.models if self.may_use(model)]


def identify(config: GatewayConfig, headers: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> Caller:
    """The caller a request's `Authorization` header names; 401 for a key that matches nothing."""
    if matches_admin(config, headers, environ):
        return Caller("admin")
    if not config.auth.keys:
        return Caller("open")
    if bearer_token(headers) is None:
        return Caller("anonymous")
    key = authenticate(config, headers, environ)
    return Caller("client", key)


async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The one place where routes are authorized (registered on the app for every handler). A coroutine although
    it never waits: Litestar runs a plain function guard in a worker thread, a hop on every request."""
    access = handler.opt.get(ACCESS)
    if access is None and getattr(handler, "http_methods", None) == {"OPTIONS"}:
        access = Access.PUBLIC  # Litestar's own OPTIONS answer: the Allow header, no data
    runtime = connection.app.state.runtime
    config = runtime.config
    if not isinstance(access, Access):  # check_routes stops such an app at start-up; refuse all the same
        raise PermissionDenied("This route declares no access rule.", code="access_undeclared")
    headers = connection.headers
    try:
        caller = identify(config, headers)
    except AuthenticationFailed:
        if access is not Access.PUBLIC:
            raise
        caller = Caller("anonymous")  # a public route answers a bad key as if none was sent
    _require(access, caller, config, has_token=bearer_token(headers) is not None)
    if access is Access.CLIENT and runtime.draining:
        raise ServiceUnavailable("The gateway is shutting down; retry on another instance.", code="server_shutting_down")
    state = connection.scope["state"]
    state["caller"] = caller
    if caller.key is not None:
        state["record"].fields["key"] = caller.key.name
    elif caller.kind == "admin":
        state["record"].fields["key"] = "admin"


def _require(access: Access, caller: Caller, config: GatewayConfig, *, has_token: bool) -> None:
    if access is Access.PUBLIC:
        return
    if access is Access.ADMIN:
        if config.auth.admin_key_env is None or not os.environ.get(config.auth.admin_key_env):
            raise PermissionDenied(
                "Admin endpoints are disabled: set auth.admin_key_env in the manifest and that environment variable.",
                code="admin_disabled",
            )
        if caller.kind != "admin":
            raise AuthenticationFailed("The admin key is required (Authorization: Bearer <key>)."
                                       if not has_token else "The admin key is not valid.")
        return
    if access is Access.CLIENT:
        if caller.kind not in ("open", "client") and config.auth.keys:
            raise AuthenticationFailed("An API key is required (Authorization: Bearer <key>)."
                                       if caller.kind == "anonymous" else "The admin key is not an API key.")
        return
    if caller.kind == "anonymous":  # ANY_KEY and OPERATOR
        raise AuthenticationFailed("An API key or the admin key is required (Authorization: Bearer <key>).")
    if access is Access.OPERATOR and not caller.sees_everything:
        raise PermissionDenied(f"The API key '{caller.key.name if caller.key else ''}' is limited to some models; "
                               "operational data needs the admin key or a key limited to no model.",
                               code="key_limited")


def caller_of(request: Any) -> Caller:
    """The caller the guard identified for this request."""
    caller = request.scope["state"].get("caller")
    if not isinstance(caller, Caller):
        raise GatewayError("The request reached a route without passing the access guard.")
    return caller


def check_routes(handlers: Iterable[BaseRouteHandler]) -> None:
    """Refuse to build an app with a route that declares no access rule."""
    missing = [str(getattr(h, "paths", h)) for h in handlers if not isinstance(h.opt.get(ACCESS), Access)]
    if missing:
        raise RuntimeError(f"routes without an access rule: {', '.join(missing)}")
