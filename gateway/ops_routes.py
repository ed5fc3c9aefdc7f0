"""Operations routes: /ready, /metrics, the status page (/) and its data (/status.json)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar import Response as HttpResponse

from gateway.auth import authenticate, require_admin
from gateway.errors import AuthenticationFailed
from gateway.http import json_response
from gateway.metrics import CONTENT_TYPE
from gateway.status import PAGE, status_document

__all__ = ["OPS_ROUTES", "gateway_state"]


async def gateway_state(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Everything /health, /ready, /metrics and the status page report, gathered once."""
    state = request.app.state.runtime.health()
    state["store"] = await request.app.state.stateful.store.health()
    if state["store"].get("state") != "ok":
        state["status"] = "degraded"
    reloader = getattr(request.app.state, "reloader", None)
    if reloader is not None:
        state["manifest"] = reloader.describe()
    return state


def _require_key(request: Request[Any, Any, Any]) -> None:
    """With API keys configured, operational data needs one of them or the admin key."""
    config = request.app.state.runtime.config
    if not config.auth.keys:
        return
    try:
        authenticate(config, request.headers)
    except AuthenticationFailed:
        require_admin(config, request.headers)


@get("/ready")
async def ready(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    """200 when the manifest is loaded, the store answers and no model is broken; else 503 with the reasons."""
    state = await gateway_state(request)
    problems = []
    if state["store"].get("state") != "ok":
        problems.append(f"store: {state['store'].get('state')}")
    for name, model in state["models"].items():
        if model.get("state") == "failed":
            problems.append(f"model {name}: {model.get('state')}")
    body = {"ready": not problems, "problems": problems, "manifest_version": state.get("manifest_version"),
            "models": {name: model.get("state") for name, model in state["models"].items()}}
    return json_response(body, status=200 if not problems else 503)


@get("/metrics")
async def metrics(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    _require_key(request)
    exposition = request.app.state.metrics.exposition(await gateway_state(request))
    return HttpResponse(exposition, media_type=CONTENT_TYPE)


@get("/")
async def status_page() -> HttpResponse[str]:
    return HttpResponse(PAGE, media_type="text/html; charset=utf-8")


@get("/status.json")
async def status_data(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    _require_key(request)
    document = status_document(await gateway_state(request), request.app.state.recent)
    return json_response(document, headers={"Cache-Control": "no-store"})


OPS_ROUTES = [ready, metrics, status_page, status_data]
