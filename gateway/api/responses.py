"""POST /v1/responses: the path of one request, top to bottom."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, post
from litestar import Response as HttpResponse
from litestar.response import Stream

from gateway.access import ACCESS, Access, caller_of
from gateway.api.bodies import json_response, read_body, unless_client_leaves
from gateway.api.context import authorize, new_run, runtime_of, store_of
from gateway.background import follow
from gateway.normalize import decode_request
from gateway.protocol import ResponsesRequest
from gateway.service import Prepared, prepare_response, settle_plan
from gateway.sse import SSE_HEADERS, sse_stream
from gateway.turn import Turn, open_turn

__all__ = ["RESPONSES_ROUTES"]


@post("/v1/responses", status_code=200, opt={ACCESS: Access.CLIENT})
async def create_response(request: Request[Any, Any, Any]) -> HttpResponse[Any]:
    store = store_of(request)
    # 1-2. decode; what the store brings; model, policies, conversation, generation request: 4xx/503 before any byte
    turn, prepared = await _prepare(request, decode_request(await read_body(request)))
    # 3. the run: stored as it starts, then its events
    run = new_run(request, prepared, turn)
    await (run.begin() if run.background else unless_client_leaves(request, run.begin()))
    if run.background:
        request.app.state.background.launch(run)
        if not prepared.request.stream:
            return json_response(prepared.response, headers=run.headers)
        events = follow(store, prepared.response.id, after=-1)
        return Stream(events, media_type="text/event-stream", headers={**SSE_HEADERS, **run.headers})
    if prepared.request.stream:
        return Stream(sse_stream(run.events()), media_type="text/event-stream", headers={**SSE_HEADERS, **run.headers})
    return json_response(await unless_client_leaves(request, run.collect()), headers=run.headers)


@post("/v1/responses/input_tokens", status_code=200, opt={ACCESS: Access.CLIENT})
async def count_input_tokens(request: Request[Any, Any, Any]) -> HttpResponse[Any]:
    """The prompt tokens a create request would cost (chain, conversation, tools and policies included),
    without generating or storing anything."""
    body = decode_request(await read_body(request))
    # Read what the store holds as a stored turn would, but write nothing.
    body = msgspec.structs.replace(body, store=True, background=False, stream=False)
    _, prepared = await _prepare(request, body)
    tokens = await prepared.adapter.count_input_tokens(prepared.generation)
    return json_response({"object": "response.input_tokens", "input_tokens": tokens})


async def _prepare(request: Request[Any, Any, Any], body: ResponsesRequest) -> tuple[Turn, Prepared]:
    """The stored chain, conversation and item references the caller may read, then the model, policies and
    conversation for the generation; authorized before anything can make a model load."""
    runtime = runtime_of(request)
    snapshot = runtime.snapshot  # this request keeps it to the end, whatever a reload does
    caller = caller_of(request)
    turn = await open_turn(store_of(request), body, lambda model: caller.may_read(model, snapshot.config),
                           caller.owner)

    def plan() -> Prepared:
        return prepare_response(
            snapshot.config, snapshot.adapters, turn.request, request.headers, history=turn.history, ids=turn.ids,
            checks=runtime.checks,
        )

    prepared = plan()
    authorize(request, prepared)
    prepared = await settle_plan(prepared, plan)  # capabilities only a load can tell: the first plan = later ones
    return turn, prepared


RESPONSES_ROUTES = [create_response, count_input_tokens]
