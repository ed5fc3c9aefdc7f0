"""HTTP routes: thin handlers over the service and the runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, get, post
from litestar import Response as HttpResponse
from litestar.params import FromPath
from litestar.response import Stream

from gateway.access import ACCESS, Access, caller_of
from gateway.errors import ModelNotFound, PermissionDenied
from gateway.events import Event
from gateway.log import RequestRecord
from gateway.protocol import CustomToolCallOutput, FunctionCallOutput, LocalShellCallOutput
from gateway.assemble import Assembler
from gateway.background import follow
from gateway.http import json_response, read_body
from gateway.normalize import decode_request
from gateway.ops_routes import gateway_state, visible_state
from gateway.responses_routes import RESPONSE_ROUTES
from gateway.routing import resolve_model
from gateway.runner import Finalizer, RunStats, run_generation
from gateway.runtime import Lease, Runtime
from gateway.service import Prepared, prepare_response
from gateway.sse import SSE_HEADERS, sse_stream
from gateway.stateful import Saver, Stateful, open_turn

__all__ = ["ROUTES", "authorize", "start_run"]

DEGRADED_HEADER = "x-gateway-degraded"
TOOL_OUTPUTS = (FunctionCallOutput, CustomToolCallOutput, LocalShellCallOutput)


def _runtime(request: Request[Any, Any, Any]) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _record(request: Request[Any, Any, Any]) -> RequestRecord:
    return request.scope["state"]["record"]  # type: ignore[no-any-return]


def _header_value(items: list[str]) -> str:
    return ", ".join(items).encode("ascii", "replace").decode("ascii")[:2000]


async def _recorded(
    batches: AsyncIterator[list[Event]], stats: RunStats, record: RequestRecord, lease: Lease, active: Any
) -> AsyncIterator[list[Event]]:
    active.inc()
    try:
        async for batch in batches:
            yield batch
    finally:
        active.dec()
        lease.release()
        record.fields.update(
            response_status=stats.status,
            ttft_ms=stats.ttft_ms(),
            input_tokens=stats.input_tokens,
            output_tokens=stats.output_tokens,
            cached_tokens=stats.cached_tokens,
            tokens_per_second=stats.tokens_per_second(),
        )
        if stats.error is not None:
            record.fields["error_code"] = stats.error.code


def start_run(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    prepared: Prepared,
    *,
    finalize: Finalizer | None = None,
    queued: bool = False,
) -> tuple[AsyncIterator[list[Event]], Assembler, RunStats, dict[str, str]]:
    """Start one generation for an HTTP request: log fields, adapter lease, runner. Shared by every endpoint."""
    record = _record(request)
    items = prepared.request.input
    record.fields.update(
        model=prepared.model.name,
        response_id=prepared.response.id,
        client=request.headers.get("user-agent", "")[:80],
        input_items=len(items),
        tool_outputs=sum(isinstance(item, TOOL_OUTPUTS) for item in items),
    )
    headers: dict[str, str] = {}
    if prepared.plan.degradations:
        record.fields["degradations"] = prepared.plan.degradations
        headers[DEGRADED_HEADER] = _header_value(prepared.plan.degradations)
    stats = RunStats()
    assembler = prepared.assembler()
    runner = run_generation(
        prepared.adapter,
        prepared.generation,
        assembler,
        prepared.mapper(),
        keepalive=runtime.snapshot.config.server.keepalive_seconds,
        stats=stats,
        finalize=finalize,
        queued=queued,
        aborts=runtime.aborts,
    )
    active = request.app.state.metrics.active_streams.labels(prepared.model.name)
    return _recorded(runner, stats, record, runtime.lease(prepared.adapter), active), assembler, stats, headers


def authorize(request: Request[Any, Any, Any], prepared: Prepared) -> None:
    """The request's API key (if keys are configured) must be allowed this model: 403 before any work."""
    caller = caller_of(request)
    if not caller.may_use(prepared.model):
        name = caller.key.name if caller.key is not None else ""
        raise PermissionDenied(f"The API key '{name}' may not use the model '{prepared.model.name}'.",
                               param="model", code="model_not_allowed")


@post("/v1/responses", status_code=200, opt={ACCESS: Access.CLIENT})
async def create_response(request: Request[Any, Any, Any]) -> HttpResponse[Any]:
    runtime = _runtime(request)
    snapshot = runtime.snapshot  # this request keeps it to the end, whatever a reload does
    stateful: Stateful = request.app.state.stateful
    body = await read_body(request)
    caller = caller_of(request)
    may_read = lambda model: caller.may_read(model, snapshot.config)  # noqa: E731
    turn = await open_turn(stateful.store, decode_request(body), may_read)  # chain, references: 4xx/503 first
    prepared = prepare_response(
        snapshot.config, snapshot.adapters, turn.request, request.headers, history=turn.history, ids=turn.ids
    )
    authorize(request, prepared)
    saver = Saver(stateful.store, prepared, turn)
    await saver.begin()
    background = prepared.request.background
    batches, assembler, stats, headers = start_run(
        request, runtime, prepared, finalize=None if background else saver.finalize, queued=background
    )
    if background:
        stateful.background.launch(prepared, batches, assembler)
        if not prepared.request.stream:
            return json_response(prepared.response, headers=headers)
        events = follow(stateful.store, prepared.response.id, after=-1)
        return Stream(events, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    batches = saver.wrap(batches, assembler, stats)
    if prepared.request.stream:
        return Stream(sse_stream(batches), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    async for _ in batches:
        pass
    if stats.error is not None:
        raise stats.error
    return json_response(assembler.response, headers=headers)


@get("/v1/models", opt={ACCESS: Access.CLIENT})
async def list_models(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    runtime = _runtime(request)
    models = caller_of(request).visible_models(runtime.config)
    return json_response({"object": "list", "data": [_model_object(m.name, runtime.started_at) for m in models]})


@get("/v1/models/{model_id:path}", opt={ACCESS: Access.CLIENT})
async def get_model(request: Request[Any, Any, Any], model_id: FromPath[str]) -> HttpResponse[bytes]:
    runtime = _runtime(request)
    name = model_id.lstrip("/")
    model = resolve_model(runtime.config, name)
    if not caller_of(request).may_use(model):  # as absent as in the listing
        raise ModelNotFound(name)
    return json_response(_model_object(model.name, runtime.started_at))


def _model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "mlx-gateway"}


@get("/health", opt={ACCESS: Access.PUBLIC})
async def health(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    """Liveness for anyone (`status` only); the details for a caller with a key, limited to what it may see."""
    caller = caller_of(request)
    state = await gateway_state(request)
    if not caller.identified:
        return json_response({"status": state["status"]})
    return json_response(visible_state(state, caller, _runtime(request).config))


ROUTES = [create_response, list_models, get_model, health, *RESPONSE_ROUTES]
