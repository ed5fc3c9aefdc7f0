"""POST /v1/responses: the path of one request, top to bottom."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar import Response as HttpResponse
from litestar.response import Stream

from gateway.access import ACCESS, Access, caller_of
from gateway.api.bodies import json_response, read_body
from gateway.api.context import authorize, new_run, runtime_of, store_of
from gateway.background import follow
from gateway.normalize import decode_request
from gateway.service import Prepared, prepare_response, settle_plan
from gateway.sse import SSE_HEADERS, sse_stream
from gateway.turn import open_turn

__all__ = ["RESPONSES_ROUTES"]


@post("/v1/responses", status_code=200, opt={ACCESS: Access.CLIENT})
async def create_response(request: Request[Any, Any, Any]) -> HttpResponse[Any]:
    snapshot = runtime_of(request).snapshot  # this request keeps it to the end, whatever a reload does
    store = store_of(request)
    caller = caller_of(request)
    # 1. decode; the stored chain and item references (what the caller may read): 4xx/503 before any byte
    body = decode_request(await read_body(request))
    turn = await open_turn(store, body, lambda model: caller.may_read(model, snapshot.config), caller.owner)
    # 2. model, policies, conversation, generation request
    def plan() -> Prepared:
        return prepare_response(
            snapshot.config, snapshot.adapters, turn.request, request.headers, history=turn.history, ids=turn.ids
        )

    prepared = plan()
    authorize(request, prepared)
    prepared = await settle_plan(prepared, plan)  # capabilities only a load can tell: the first plan = later ones
    # 3. the run: stored as it starts, then its events
    run = new_run(request, prepared, turn)
    await run.begin()
    if run.background:
        request.app.state.background.launch(run)
        if not prepared.request.stream:
            return json_response(prepared.response, headers=run.headers)
        events = follow(store, prepared.response.id, after=-1)
        return Stream(events, media_type="text/event-stream", headers={**SSE_HEADERS, **run.headers})
    if prepared.request.stream:
        return Stream(sse_stream(run.events()), media_type="text/event-stream", headers={**SSE_HEADERS, **run.headers})
    return json_response(await run.collect(), headers=run.headers)


RESPONSES_ROUTES = [create_response]
