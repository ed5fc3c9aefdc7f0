"""POST /v1/chat/completions."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar import Response as HttpResponse
from litestar.response import Stream

from gateway.chat.stream import ChunkWriter
from gateway.chat.translate import completion_object, decode_chat_request, to_responses_request
from gateway.access import ACCESS, Access
from gateway.http import json_response, read_body
from gateway.routes import authorize, start_run
from gateway.runtime import Runtime
from gateway.service import prepare_response
from gateway.sse import SSE_HEADERS

__all__ = ["CHAT_ROUTES"]


@post("/v1/chat/completions", status_code=200, opt={ACCESS: Access.CLIENT})
async def chat_completions(request: Request[Any, Any, Any]) -> HttpResponse[Any]:
    runtime: Runtime = request.app.state.runtime
    snapshot = runtime.snapshot
    chat = decode_chat_request(await read_body(request))
    responses_request, stop = to_responses_request(chat)
    prepared = prepare_response(snapshot.config, snapshot.adapters, responses_request, request.headers, stop=stop)
    authorize(request, prepared)
    batches, assembler, stats, headers = start_run(request, runtime, prepared)
    completion_id = "chatcmpl-" + prepared.response.id.removeprefix("resp_")
    if chat.stream:
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
        writer = ChunkWriter(completion_id, prepared.model.name, prepared.response.created_at, include_usage)
        return Stream(writer.stream(batches), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    async for _ in batches:
        pass
    if stats.error is not None:
        raise stats.error
    return json_response(completion_object(assembler.response, completion_id), headers=headers)


CHAT_ROUTES = [chat_completions]
