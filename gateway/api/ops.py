"""Operations routes: /health, /ready, /metrics, the status page (/) and its data (/status.json).

Readiness (`/ready`) answers one question for a load balancer: should this instance get requests? Yes (200) while
the manifest is loaded and the gateway is not shutting down, the store answers, and at least one model can serve.
A model can serve in `ready` and `unloaded` (it loads on demand), and in `loading` when that is not a retry after a
failure; it cannot in `backoff`, `failed`, `crashed` or `closed` (nor an upstream model in `unreachable`: every
replica's circuit breaker open; `degraded`, some open, still serves), nor while loading again after a failed load or a
crash (it counts again once a load succeeds). So one broken model never takes the healthy ones out of rotation, and
a gateway whose every model is broken stays out (503) without flapping as its retries come and go.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, head
from litestar import Response as HttpResponse

from gateway.access import ACCESS, Access, Caller, caller_of
from gateway.api.bodies import json_response
from gateway.api.status_page import PAGE, status_document
from gateway.config import GatewayConfig
from gateway.metrics import CONTENT_TYPE

__all__ = ["OPS_ROUTES"]


UNABLE_STATES = frozenset({"backoff", "failed", "crashed", "closed", "unreachable"})


def can_serve(model: dict[str, Any]) -> bool:
    """Whether a request sent to this model now is expected to be served (see the module docstring)."""
    state = model.get("state")
    if state in UNABLE_STATES:
        return False
    return not (state == "loading" and model.get("last_error"))  # loading again after a failure


async def gateway_state(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Everything /health, /ready, /metrics and the status page report, gathered once.

    `status` is `degraded` while the store is down, a model cannot serve, or the running manifest is not what the
    manifest file holds (a rejected reload, or an edit not reloaded yet).
    """
    state = request.app.state.runtime.health()
    state["store"] = await request.app.state.store.health()
    reloader = getattr(request.app.state, "reloader", None)
    if reloader is not None:
        state["manifest"] = reloader.describe()
    if (state["store"].get("state") != "ok" or not all(map(can_serve, state["models"].values()))
            or not state.get("manifest", {}).get("matches_file", True)):
        state["status"] = "degraded"
    return state


def readiness(state: dict[str, Any], draining: bool) -> list[str]:
    """Why this instance should get no requests now (empty: ready)."""
    problems = []
    if draining:
        problems.append("draining: the gateway is shutting down")
    if state["store"].get("state") != "ok":
        problems.append(f"store: {state['store'].get('state')}")
    if not any(map(can_serve, state["models"].values())):
        problems.append("models: none can serve")
    return problems


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
    """200 while the gateway should get requests (see the module docstring); else 503 with the reasons.

    Anyone gets `{"ready": ...}` and the status code; a caller with a key also gets the reasons and, for the models
    it may see, each one's state and which of them cannot serve.
    """
    caller = caller_of(request)
    runtime = request.app.state.runtime
    state = await gateway_state(request)
    problems = readiness(state, runtime.draining)
    status = 200 if not problems else 503
    if not caller.identified:
        return json_response({"ready": not problems}, status=status)
    shown = visible_state(state, caller, runtime.config)["models"]
    body = {"ready": not problems, "problems": problems, "manifest_version": state.get("manifest_version"),
            "store": state["store"].get("state"),
            "models": {name: model.get("state") for name, model in shown.items()},
            "unavailable": [name for name, model in shown.items() if not can_serve(model)]}
    return json_response(body, status=status)


@head("/health", opt={ACCESS: Access.PUBLIC})
async def health_head() -> HttpResponse[None]:
    """HEAD /health: alive (load balancers and uptime checks that probe with HEAD)."""
    return HttpResponse(None, status_code=200)


@head("/ready", opt={ACCESS: Access.PUBLIC})
async def ready_head(request: Request[Any, Any, Any]) -> HttpResponse[None]:
    """HEAD /ready: the status code of GET /ready, without a body."""
    problems = readiness(await gateway_state(request), request.app.state.runtime.draining)
    return HttpResponse(None, status_code=200 if not problems else 503)


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


OPS_ROUTES = [health, health_head, ready, ready_head, metrics, status_page, status_data]
