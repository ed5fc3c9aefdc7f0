"""`create_app(config)`: the Litestar application, its lifespan and its one error handler."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import structlog
from litestar import Litestar, Request
from litestar import Response as HttpResponse
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException
from litestar.types import HTTPScope, LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from gateway.access import ACCESS, Access, check_routes, guard
from gateway.api import ROUTE_HANDLERS
from gateway.api.status_page import RecentRequests
from gateway.background import BackgroundRuns
from gateway.config import GatewayConfig
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    envelope,
    retry_after,
)
from gateway.ids import new_id
from gateway.log import RequestRecord
from gateway.metrics import Metrics
from gateway.reload import Reloader
from gateway.runtime import Runtime
from gateway.store import RedisStore

__all__ = ["GatewayApp", "create_app"]

log = structlog.get_logger()

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


_HTTP_CODES = MappingProxyType({400: "invalid_value", 401: "invalid_api_key", 403: "permission_denied",
                                408: "request_timeout", 409: "conflict", 415: "unsupported_media_type",
                                429: "rate_limit_exceeded"})


def to_gateway_error(exc: Exception, request: Request[Any, Any, Any] | None = None) -> GatewayError:
    if isinstance(exc, GatewayError):
        return exc
    where = f"{request.method} {request.url.path}" if request is not None else "this route"
    if isinstance(exc, NotFoundException):
        return NotFound(f"Unknown route: {where}.", code="not_found")
    if isinstance(exc, MethodNotAllowedException):
        return MethodNotAllowed(f"Method not allowed: {where}.")
    if isinstance(exc, HTTPException) and exc.status_code == 413:
        return PayloadTooLarge("The request body is larger than this gateway accepts (server.max_body_bytes).")
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        # Litestar's own 4xx (a path or header it could not parse, ...): still a request error with a code.
        error = InvalidRequest(str(exc.detail), code=_HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}"))
        error.status = exc.status_code
        return error
    log.error("unhandled_exception", exc_info=exc)
    return GatewayError("The server had an error while processing the request.")


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> HttpResponse[bytes]:
    error = to_gateway_error(exc, request)
    record = request.scope.get("state", {}).get("record")
    if isinstance(record, RequestRecord):
        record.fields["error_code"] = error.code
    retry = retry_after(error)
    headers = {"Retry-After": retry} if retry else None
    return HttpResponse(envelope(error), status_code=error.status, media_type="application/json", headers=headers)


class GatewayApp(Litestar):
    """Litestar plus an outermost layer that runs for every request, 404s included:
    a request id (echoed as `x-request-id`) and one canonical log line. Authorization is
    not here: it belongs to the route that matched (`access.guard`)."""

    async def __call__(
        self, scope: Scope | LifeSpanScope, receive: Receive | LifeSpanReceive, send: Send | LifeSpanSend
    ) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # An http scope comes with http receive/send callables (the ASGI spec); mypy cannot tie them together.
        await self._serve_http(cast(HTTPScope, scope), cast(Receive, receive), cast(Send, send))

    async def _serve_http(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else new_id("req")
        record = RequestRecord(request_id, scope["method"], scope["path"])
        scope.setdefault("state", {})["record"] = record

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await super().__call__(scope, receive, send_with_id)
        finally:
            line = record.line()
            log.info("request", **line)
            self._observe(scope, record, line)

    def _observe(self, scope: Scope, record: RequestRecord, line: dict[str, Any]) -> None:
        metrics = getattr(self.state, "metrics", None)
        if metrics is None:
            return
        endpoint = scope.get("path_template") or "unmatched"  # raw paths would explode label cardinality
        metrics.observe(endpoint, record.status, record.fields, line["duration_ms"] / 1000)
        handler = scope.get("route_handler")
        if handler is not None and handler.opt.get(ACCESS) in (Access.CLIENT, Access.ADMIN):
            self.state.recent.add(line)  # API and admin calls; not the status page polling itself


def create_app(config: GatewayConfig, *, manifest_path: str | Path | None = None) -> GatewayApp:
    """Build the application for a validated manifest. Nothing starts until the lifespan runs.

    With `manifest_path`, the manifest is watched and reloaded on change, SIGHUP or POST /admin/reload.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = Runtime(config)
        await runtime.start()
        app.state.runtime = runtime
        app.state.metrics = Metrics()
        app.state.recent = RecentRequests()
        app.state.store = RedisStore.from_config(config.store)  # connects lazily: Redis down does not stop start-up
        app.state.store.observe = app.state.metrics.observe_store
        app.state.background = BackgroundRuns(app.state.store)
        reloader = Reloader(runtime, manifest_path) if manifest_path is not None else None
        app.state.reloader = reloader
        if reloader is not None:
            reloader.start()
        try:
            yield
        finally:
            if reloader is not None:
                await reloader.stop()
            await app.state.background.aclose()  # background runs end (and are stored) before their adapters close
            await app.state.store.aclose()
            await runtime.aclose()

    check_routes(ROUTE_HANDLERS)
    return GatewayApp(
        route_handlers=ROUTE_HANDLERS,
        guards=[guard],
        lifespan=[lifespan],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=config.server.max_body_bytes,
        logging_config=None,
        openapi_config=None,
    )
