"""HTTP routes: thin handlers over the service and the runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar import Response as HttpResponse
from litestar.params import FromPath
from litestar.response import Stream

from gateway.errors import NotFound
from gateway.events import Event
from gateway.log import RequestRecord
from gateway.runner import RunStats, run_generation
from gateway.runtime import Lease, Runtime
from gateway.service import Prepared, prepare_response
from gateway.sse import SSE_HEADERS, sse_stream

__all__ = ["ROUTES"]

_JSON = msgspec.json.Encoder()
DEGRADED_HEADER = "x-gateway-degraded"


def _runtime(request: Request[Any, Any, Any]) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _record(request: Request[Any, Any, Any]) -> RequestRecord:
    return request.scope["state"]["record"]  # type: ignore[no-any-return]


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse[bytes]:
    return HttpResponse(_JSON.encode(obj), status_code=status, media_type="application/json", headers=headers)


def _header_value(items: list[str]) -> str:
    return ", ".join(items).encode("ascii", "replace").decode("ascii")[:2000]


async def _recorded(
    batches: AsyncIterator[list[Event]], stats: RunStats, record: RequestRecord, lease: Lease
) -> AsyncIterator[list[Event]]:
    try:
        async for batch in batches:
            yield batch
    finally:
        lease.release()
        record.fields.update(
            response_status=stats.status,
            ttft_ms=stats.ttft_ms(),
            input_tokens=stats.input_tokens,
            output_tokens=stats.output_tokens,
            cached_tokens=stats.cached_tokens,
        )
        if stats.error is not None:
            record.fields["error_code"] = stats.error.code


@post("/v1/responses", status_code=200)
async def create_response(request: Request[Any, Any, Any]) -> HttpResponse[Any]:
    runtime = _runtime(request)
    snapshot = runtime.snapshot  # this request keeps it to the end, whatever a reload does
    record = _record(request)
    body = await request.body()
    prepared: Prepared = prepare_response(snapshot.config, snapshot.adapters, body, request.headers)
    record.fields.update(model=prepared.model.name, response_id=prepared.response.id)
    headers: dict[str, str] = {}
    if prepared.plan.degradations:
        record.fields["degradations"] = prepared.plan.degradations
        headers[DEGRADED_HEADER] = _header_value(prepared.plan.degradations)
    stats = RunStats()
    assembler = prepared.assembler()
    batches = _recorded(
        run_generation(
            prepared.adapter,
            prepared.generation,
            assembler,
            prepared.mapper(),
            keepalive=snapshot.config.server.keepalive_seconds,
            stats=stats,
        ),
        stats,
        record,
        runtime.lease(prepared.adapter),
    )
    if prepared.request.stream:
        return Stream(sse_stream(batches), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    async for _ in batches:
        pass
    if stats.error is not None:
        raise stats.error
    return _json(assembler.response, headers=headers)


@get("/v1/models")
async def list_models(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    runtime = _runtime(request)
    data = [_model_object(name, runtime.started_at) for name in runtime.config.model_names()]
    return _json({"object": "list", "data": data})


@get("/v1/models/{model_id:path}")
async def get_model(request: Request[Any, Any, Any], model_id: FromPath[str]) -> HttpResponse[bytes]:
    runtime = _runtime(request)
    name = model_id.lstrip("/")
    for model in runtime.config.models:
        if name == model.name or name in model.aliases:
            return _json(_model_object(model.name, runtime.started_at))
    raise NotFound(f"The model '{name}' does not exist or is not served here.", param="model", code="model_not_found")


def _model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "mlx-gateway"}


@get("/health")
async def health(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    state = _runtime(request).health()
    reloader = getattr(request.app.state, "reloader", None)
    if reloader is not None:
        state["manifest"] = reloader.describe()
    return _json(state)


ROUTES = [create_response, list_models, get_model, health]
