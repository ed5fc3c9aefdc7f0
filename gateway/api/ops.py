"""Operations routes: /health, /ready, /metrics, the status page (/) and its data (/status.json)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar import Response as HttpResponse

from gateway.access import ACCESS, Access, Caller, caller_of
from gateway.config import GatewayConfig
from gateway.api.bodies import json_response
from gateway.api.status_page import PAGE, status_document
from gateway.metrics import CONTENT_TYPE

__all__ = ["OPS_ROUTES"]


async def gateway_state(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Everything /health, /ready, /metrics and the status page report, gathered once."""
    state = request.app.state.runtime.health()
    state["store"] = await request.app.state.store.health()
    if state["store"].get("state") != "ok":
        state["status"] = "degraded"
    reloader = getattr(request.app.state, "reloader", None)
    if reloader is not None:
        state["manifest"] = reloader.describe()
    return state


def visible_state(state: dict[str, Any], caller: Caller, config: GatewayConfig) -> dict[str, Any]:
    """`state` as `caller` may see it: a key limited to some models sees only those, and not the manifest."""
    if caller.sees_everything:
        return state
    allowed = {model.name for model in caller.visible_models(config)}
    limited = {name: value for name, value in state.items() if name != "manifest"}
    limited["models"] = {name: info for name, info in state["models"].items() if name in allowed}
    return limited


@get("/health", opt={ACCESS: Access.PUBLIC})
async def health(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    """Liveness for anyone (`status` only); the details for a caller with a key, limited to what it may see."""
    caller = caller_of(request)
    state = await gateway_state(request)
    if not caller.identified:
        return json_response({"status": state["status"]})
    return json_response(visible_state(state, caller, request.app.state.runtime.config))


@get("/ready", opt={ACCESS: Access.PUBLIC})
async def ready(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    """200 when the manifest is loaded, the store answers and no model is broken; else 503.

    Anyone gets `{"ready": ...}` and the status code; a caller with a key also gets the reasons and the models.
    """
    caller = caller_of(request)
    state = await gateway_state(request)
    problems = []
    if state["store"].get("state") != "ok":
        problems.append(f"store: {state['store'].get('state')}")
    for name, model in state["models"].items():
        if model.get("state") == "failed":
            problems.append(f"model {name}: {model.get('state')}")
    status = 200 if not problems else 503
    if not caller.identified:
        return json_response({"ready": not problems}, status=status)
    shown = visible_state(state, caller, request.app.state.runtime.config)
    body = {"ready": not problems, "problems": [p for p in problems if _shows(p, shown)],
            "manifest_version": state.get("manifest_version"),
            "models": {name: model.get("state") for name, model in shown["models"].items()}}
    return json_response(body, status=status)


def _shows(problem: str, shown: dict[str, Any]) -> bool:
    """A problem about a model the caller may not see is counted in `ready`, not named."""
    return not problem.startswith("model ") or problem.removeprefix("model ").split(":")[0] in shown["models"]


@get("/metrics", opt={ACCESS: Access.OPERATOR})
async def metrics(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    exposition = request.app.state.metrics.exposition(await gateway_state(request))
    return HttpResponse(exposition, media_type=CONTENT_TYPE)


@get("/", opt={ACCESS: Access.PUBLIC})
async def status_page() -> HttpResponse[str]:
    return HttpResponse(PAGE, media_type="text/html; charset=utf-8")  # no data: it fetches /status.json


@get("/status.json", opt={ACCESS: Access.ANY_KEY})
async def status_data(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    caller = caller_of(request)
    config = request.app.state.runtime.config
    state = visible_state(await gateway_state(request), caller, config)
    document = status_document(state, request.app.state.recent, shows=lambda model: caller.may_read(model, config))
    return json_response(document, headers={"Cache-Control": "no-store"})


OPS_ROUTES = [health, ready, metrics, status_page, status_data]
