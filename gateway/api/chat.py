"""POST /v1/chat/completions: translated into a Responses request, run like one, folded back into chat chunks."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar import Response as HttpResponse
from litestar.response import Stream

from gateway.access import ACCESS, Access
from gateway.api.bodies import json_response, read_body, unless_client_leaves
from gateway.api.context import authorize, new_run, runtime_of
from gateway.chat.stream import ChunkWriter
from gateway.chat.translate import completion_object, decode_chat_request, to_responses_request
from gateway.service import Prepared, prepare_response, settle_plan
from gateway.sse import SSE_HEADERS

__all__ = ["CHAT_ROUTES"]


@post("/v1/chat/completions", status_code=200, opt={ACCESS: Access.CLIENT})
async def chat_completions(request: Request[Any, Any, Any]) -> HttpResponse[Any]:
    runtime = runtime_of(request)
    snapshot = runtime.snapshot
    chat = decode_chat_request(await read_body(request))
    responses_request, stop = to_responses_request(chat)
    def plan() -> Prepared:
        return prepare_response(snapshot.config, snapshot.adapters, responses_request, request.headers, stop=stop,
                                checks=runtime.checks)

    prepared = plan()
    authorize(request, prepared)
    prepared = await settle_plan(prepared, plan)
    run = new_run(request, prepared)  # chat completions are never stored
    await unless_client_leaves(request, run.begin())
    completion_id = "chatcmpl-" + prepared.response.id.removeprefix("resp_")
    if chat.stream:
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
        writer = ChunkWriter(completion_id, prepared.model.name, prepared.response.created_at, include_usage)
        return Stream(writer.stream(run.events()), media_type="text/event-stream", headers={**SSE_HEADERS, **run.headers})
    return json_response(completion_object(await unless_client_leaves(request, run.collect()), completion_id),
                         headers=run.headers)


CHAT_ROUTES = [chat_completions]
