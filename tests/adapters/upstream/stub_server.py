"""An OpenAI-compatible upstream that misbehaves on request, as a real process for the upstream adapter's tests.

    python -m tests.adapters.upstream.stub_server --port N

The request's `model` picks the behaviour (see `FAULTS`); the answer is always "Hello there" streamed in chat chunks
(POST /v1/chat/completions) or Responses events (POST /v1/responses). GET /stub/stats tells what it saw: attempts
per model and how many streams the client closed before their end. POST /stub/health {"up": false} makes
GET /v1/models answer 503 (breaker probes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from typing import Any

from aiohttp import web

FAULTS = {
    "ok": "answers at once",
    "slow-headers": "answers after 3 s (beyond the tests' read timeout)",
    "status-500": "500 with an error envelope",
    "status-400": "400 with an OpenAI error envelope (param, code)",
    "status-401": "401",
    "reset-mid-stream": "two deltas, then the connection is reset",
    "malformed-chunk": "one delta, then a chunk that is not JSON",
    "hang-mid-stream": "one delta, then nothing (the connection stays open)",
    "cut-without-finish": "two deltas, then a clean end of stream without a finish",
    "fail-once": "500 on the first attempt, then answers",
    "slow-stream": "one delta every 0.2 s for 10 s (a client that leaves early is seen leaving)",
}

_WORDS = ["Hel", "lo", " there"]


class Stub:
    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.closed_early = 0
        self.models_up = True
        self.bodies: list[dict[str, Any]] = []

    async def models(self, request: web.Request) -> web.Response:
        if not self.models_up:
            return web.json_response({"error": {"message": "down"}}, status=503)
        return web.json_response({"object": "list", "data": [{"id": name, "object": "model"} for name in FAULTS]})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"attempts": dict(self.attempts), "closed_early": self.closed_early,
                                  "last_body": self.bodies[-1] if self.bodies else None})

    async def health(self, request: web.Request) -> web.Response:
        self.models_up = bool((await request.json()).get("up"))
        return web.json_response({"up": self.models_up})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=True)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=False)

    async def _answer(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        body = await request.json()
        self.bodies = [*self.bodies[-9:], body]
        model = str(body.get("model"))
        self.attempts[model] += 1
        if model == "slow-headers":
            await asyncio.sleep(3)
        if model == "status-500" or (model == "fail-once" and self.attempts[model] == 1):
            return web.json_response({"error": {"message": "engine exploded", "type": "server_error"}}, status=500)
        if model == "status-400":
            return web.json_response({"error": {"message": "max_tokens is too large", "type": "invalid_request_error",
                                                "param": "max_tokens", "code": "invalid_value"}}, status=400)
        if model == "status-401":
            return web.json_response({"error": {"message": "bad key", "type": "authentication_error"}}, status=401)
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        frames = _chat_frames() if chat else _response_frames()
        try:
            await self._play(request, stream, model, frames)
        except (ConnectionResetError, asyncio.CancelledError):
            self.closed_early += 1
            raise
        return stream

    async def _play(self, request: web.Request, stream: web.StreamResponse, model: str, frames: list[bytes]) -> None:
        head, deltas, tail = frames[:1], frames[1:4], frames[4:]
        for frame in head:
            await stream.write(frame)
        if model == "slow-stream":
            for _ in range(50):
                await stream.write(deltas[0])
                await asyncio.sleep(0.2)
        for i, frame in enumerate(deltas):
            if model == "malformed-chunk" and i == 1:
                await stream.write(b"data: {this is not json\n\n")
                return
            if model == "hang-mid-stream" and i == 1:
                await asyncio.sleep(30)
                return
            if model in ("reset-mid-stream", "cut-without-finish") and i == 2:
                if model == "reset-mid-stream":
                    await asyncio.sleep(0.1)  # abort() drops unsent bytes: let the deltas leave first
                    assert request.transport is not None
                    request.transport.abort()  # a TCP reset, not a clean end
                return
            await stream.write(frame)
        for frame in tail:
            await stream.write(frame)
        await stream.write_eof()


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def _chat_frames() -> list[bytes]:
    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        return _sse({"id": "c1", "object": "chat.completion.chunk", "model": "stub",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]})

    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
             "prompt_tokens_details": {"cached_tokens": 4}}
    return [chunk({"role": "assistant", "content": ""}), *(chunk({"content": w}) for w in _WORDS),
            chunk({}, "stop"), _sse({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage}),
            b"data: [DONE]\n\n"]


def _response_frames() -> list[bytes]:
    def event(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, **fields}, kind)

    usage = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10, "input_tokens_details": {"cached_tokens": 4},
             "output_tokens_details": {"reasoning_tokens": 0}}
    return [event("response.created", response={"id": "resp_up", "status": "in_progress"}),
            *(event("response.output_text.delta", item_id="msg_1", output_index=0, content_index=0, delta=w)
              for w in _WORDS),
            event("response.completed", response={"id": "resp_up", "status": "completed", "usage": usage})]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    stub = Stub()
    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", stub.chat), web.post("/v1/responses", stub.responses),
                    web.get("/v1/models", stub.models), web.get("/stub/stats", stub.stats),
                    web.post("/stub/health", stub.health)])
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
