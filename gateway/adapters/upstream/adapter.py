"""The `upstream` adapter: a model another server runs, reached over HTTP (chat completions or Responses).

`open()` does everything that can fail before the client's first byte: pick a replica, send, read the status.
Refused connections, 5xx answers and connect timeouts are retried there (another replica first) up to `retries`
times; what is left becomes 502/504, and an upstream 4xx is passed through with its own message. Once the
upstream answers 200, its stream is the generation: a timeout, a cut or a garbled chunk after that fails the
response (`response.failed`), and nothing is retried (the client may have seen part of the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from typing import Any, cast

import aiohttp
import msgspec
import structlog

from gateway.adapters.base import (
    Capabilities,
    Delta,
    Finish,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
)
from gateway.adapters.scripted import estimate_input_tokens
from gateway.adapters.upstream.bodies import chat_body, responses_body
from gateway.adapters.upstream.replicas import Replica, ReplicaSet
from gateway.adapters.upstream.stops import StopCut
from gateway.adapters.upstream.streams import ChatChunks, ResponseEvents, sse_data
from gateway.config import UpstreamModel
from gateway.errors import BadGateway, GatewayError, GatewayTimeout, UpstreamRejected

__all__ = ["UpstreamAdapter"]

log = structlog.get_logger()

_ENCODE = msgspec.json.Encoder()
_PROBE_SECONDS = 5.0
_ERROR_BODY_BYTES = 64 * 1024  # what is read of an error answer (its message)


class _Retry(Exception):
    """This attempt failed in a way another attempt may not (refused, 5xx, connect timeout)."""

    def __init__(self, error: GatewayError) -> None:
        self.error = error


class UpstreamAdapter:
    def __init__(self, spec: UpstreamModel, environ: Mapping[str, str] = os.environ) -> None:
        self.spec = spec
        self.capabilities = Capabilities(
            tool_calling=True, vision=spec.vision, reasoning=True, decodes=True,
            constrains_json=spec.structured_output, constrains_calls=spec.structured_output,
        )
        key = environ.get(spec.api_key_env, "") if spec.api_key_env else ""
        self._key_missing = bool(spec.api_key_env) and not key
        self._headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self._path = "/chat/completions" if spec.api == "chat" else "/responses"
        self.replicas = ReplicaSet(spec.base_urls, failures_to_open=spec.breaker_failures,
                                   open_seconds=spec.breaker_open_seconds, probe=self._probe)
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=spec.connect_timeout_seconds,
                                              sock_read=spec.read_timeout_seconds)
        self.served = 0
        self.failures = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._key_missing:
            log.warning("upstream_key_missing", model=self.spec.name, env=self.spec.api_key_env)

    async def capabilities_ready(self) -> Capabilities:
        return self.capabilities

    async def aclose(self) -> None:
        await self.replicas.aclose()
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    def _session(self, replica: Replica) -> aiohttp.ClientSession:
        session = self._sessions.get(replica.url)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self.spec.max_connections, keepalive_timeout=30)
            session = self._sessions[replica.url] = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=True
            )
        return session

    def describe(self) -> dict[str, Any]:
        return {
            "adapter": "upstream",
            "api": self.spec.api,
            "state": self.replicas.state(),
            "active": sum(r.active for r in self.replicas.replicas),
            "served": self.served,
            "failures": self.failures,
            **({"problem": f"{self.spec.api_key_env} is not set"} if self._key_missing else {}),
            "replicas": [r.describe() for r in self.replicas.replicas],
        }

    # ------------------------------------------------------------------ requests

    def _body(self, request: GenerationRequest) -> bytes:
        model, structured = self.spec.upstream_model, self.spec.structured_output
        if self.spec.api == "chat":
            return _ENCODE.encode(chat_body(request, model, structured=structured))
        return _ENCODE.encode(responses_body(request, model, structured=structured))

    async def count_input_tokens(self, request: GenerationRequest) -> int:
        """A Responses upstream counts them (`/responses/input_tokens`); a chat one has no such endpoint, so it is
        estimated (about four characters a token), as the README says."""
        if self.spec.api == "chat":
            return estimate_input_tokens(request)
        body = _ENCODE.encode(responses_body(request, self.spec.upstream_model, structured=False, stream=False))
        try:
            answer = await self._send(body, "/responses/input_tokens")
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            raise BadGateway(f"The upstream could not count the input tokens ({type(exc).__name__}).") from None
        async with answer:
            if answer.status >= 300:
                error = await _http_error(answer)
                raise error.error if isinstance(error, _Retry) else error
            try:
                value = msgspec.json.decode(await answer.read())
            except msgspec.DecodeError:
                value = None
        tokens = value.get("input_tokens") if isinstance(value, dict) else None
        if not isinstance(tokens, int):
            raise BadGateway("The upstream's input_tokens answer has no input_tokens.")
        return tokens

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        return self._opened_then_streamed(request)

    async def _opened_then_streamed(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        stream = await self.open(request)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for delta in stream:
                yield delta

    async def open(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        stream = self._stream(request)
        # The stream's first step sends the request and reads the status; raising there is still an HTTP error.
        # Once started, a stream that is dropped unread is closed by the event loop's async-generator finalizer.
        await anext(stream)
        return cast("AsyncIterator[Delta]", stream)  # no more None after the first step

    async def _stream(self, request: GenerationRequest) -> AsyncGenerator[Delta | None, None]:
        body = self._body(request)
        answer, replica = await self._answer(body)
        replica.active += 1
        replica.requests += 1
        drained = False
        try:
            yield None  # opened
            parser = ChatChunks() if self.spec.api == "chat" else ResponseEvents()
            # A chat upstream applies `stop` itself; the Responses API has none, so the gateway does it here.
            cut = StopCut(request.stop) if self.spec.api == "responses" and request.stop else None
            finish: Finish | None = None
            try:
                async for data in sse_data(answer.content.iter_any()):
                    if finish is not None:
                        continue  # after the finish: read to the end, so the connection can be reused
                    for delta in parser.feed(data) if cut is None else _cut_at_stop(parser.feed(data), cut):
                        yield delta
                    if cut is not None and cut.hit:
                        self.served += 1
                        self.replicas.succeeded(replica)
                        yield Finish(reason="stop", usage=_usage_at_stop(request, cut))
                        return  # not drained: the connection is closed, so the upstream stops generating
                    if parser.finished:
                        if cut is not None and (held := cut.flush()):
                            yield TextDelta(text=held)
                        finish = self._succeeded(parser, replica)
                        if cut is not None and cut.hit:  # the held tail had a stop string: the answer ended there
                            finish = Finish(reason="stop", usage=finish.usage)
                        yield finish  # at once: the client need not wait for the upstream to close its stream
                if finish is None:
                    yield self._succeeded(parser, replica)
                drained = True
            except (TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ClientError, ConnectionError) as exc:
                if finish is not None:
                    return  # the answer was whole; only the end of the stream went wrong (the connection is dropped)
                if not isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
                    raise BadGateway(f"The upstream connection broke mid-answer ({type(exc).__name__}).") from None
                raise GatewayTimeout(
                    f"The upstream sent nothing for {self.spec.read_timeout_seconds:g} s (read_timeout_seconds)."
                ) from None
        except GatewayError as exc:
            self.failures += 1
            self.replicas.failed(replica, exc.message)
            raise
        finally:
            replica.active -= 1
            if drained:
                answer.release()  # back to the pool
            else:
                answer.close()  # cancelled or failed: drop the connection so the upstream stops generating

    def _succeeded(self, parser: ChatChunks | ResponseEvents, replica: Replica) -> Finish:
        finish = parser.end()  # BadGateway if the stream was cut before its end
        self.served += 1
        self.replicas.succeeded(replica)
        return finish

    async def _answer(self, body: bytes) -> tuple[aiohttp.ClientResponse, Replica]:
        """The first 200 answer, trying up to 1 + retries times; else the error of the last attempt."""
        tried: set[str] = set()
        error: GatewayError | None = None
        for _ in range(1 + self.spec.retries):
            replica = self.replicas.choose(tried)
            if replica is None:
                break
            tried.add(replica.url)
            try:
                return await self._attempt(replica, body), replica
            except _Retry as retry:
                error = retry.error
                self.replicas.failed(replica, error.message)
            except GatewayError:
                self.failures += 1
                raise
        self.failures += 1
        if error is not None:
            raise error
        raise BadGateway(
            f"Every replica of '{self.spec.name}' is failing; the next health probe is in "
            f"{self.replicas.seconds_to_probe()} s."
        )

    async def _attempt(self, replica: Replica, body: bytes) -> aiohttp.ClientResponse:
        try:
            answer = await self._send(body, self._path, replica)
        except aiohttp.ClientConnectorError as exc:
            raise _Retry(BadGateway(f"The upstream {replica.url} refused the connection ({exc.os_error}).")) from None
        except aiohttp.ConnectionTimeoutError:
            raise _Retry(GatewayTimeout(
                f"The upstream {replica.url} did not accept a connection within "
                f"{self.spec.connect_timeout_seconds:g} s (connect_timeout_seconds)."
            )) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            # It took the request and never answered: another try could double a long wait, so none is made.
            self.replicas.failed(replica, "no answer in time")
            raise GatewayTimeout(
                f"The upstream {replica.url} did not answer within {self.spec.read_timeout_seconds:g} s "
                "(read_timeout_seconds)."
            ) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise _Retry(BadGateway(f"The upstream {replica.url} failed ({type(exc).__name__}).")) from None
        if answer.status < 300:
            return answer
        try:
            raise await _http_error(answer)
        except _Retry:
            raise
        except GatewayError:
            self.replicas.succeeded(replica)  # it answered: the request was wrong, not the replica
            raise
        finally:
            answer.release()

    async def _send(self, body: bytes, path: str, replica: Replica | None = None) -> aiohttp.ClientResponse:
        if replica is None:
            replica = self.replicas.choose(set())
            if replica is None:
                raise BadGateway(f"Every replica of '{self.spec.name}' is failing.")
        return await self._session(replica).post(replica.url + path, data=body, headers=self._headers)

    async def _probe(self, replica: Replica) -> bool:
        try:
            async with asyncio.timeout(_PROBE_SECONDS):
                async with self._session(replica).get(replica.url + "/models", headers=self._headers) as answer:
                    return answer.status < 500
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return False


async def _http_error(answer: aiohttp.ClientResponse) -> Exception:
    """The error an upstream's non-2xx answer becomes (`_Retry` when another attempt may succeed)."""
    try:
        text = (await answer.content.read(_ERROR_BODY_BYTES)).decode("utf-8", "replace")
    except (TimeoutError, aiohttp.ClientError, ConnectionError):
        text = ""
    error: dict[str, Any] = {}
    with contextlib.suppress(msgspec.DecodeError):
        decoded = msgspec.json.decode(text)
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
            error = decoded["error"]
        elif isinstance(decoded, dict) and isinstance(decoded.get("detail"), str):  # FastAPI-style servers
            error = {"message": decoded["detail"]}
    message = str(error.get("message") or text.strip()[:500] or answer.reason or "no message")
    status = answer.status
    if status in (401, 403):
        return BadGateway(f"The upstream refused the gateway's credentials ({status}: {message}); "
                          "check the model's api_key_env.", code="upstream_auth_failed")
    if status >= 500 or status == 408:
        return _Retry(BadGateway(f"The upstream answered {status}: {message}"))
    param, code = error.get("param"), error.get("code")
    return UpstreamRejected(
        message, status=status, type=error.get("type") if isinstance(error.get("type"), str) else None,
        param=param if isinstance(param, str) else None, code=code if isinstance(code, str) else None,
    )


def _cut_at_stop(deltas: Iterable[Delta], cut: StopCut) -> list[Delta]:
    """`deltas` with the answer text ended at the first stop string; text held back in case it begins one is
    released before any other kind of output (which shows it did not)."""
    out: list[Delta] = []
    for delta in deltas:
        if isinstance(delta, (TextDelta, ReasoningDelta, ToolCallArguments)):
            cut.produced += len(delta.text)
        if isinstance(delta, TextDelta):
            if text := cut.feed(delta.text):
                out.append(TextDelta(text=text))
            if cut.hit:
                break
            continue
        if held := cut.flush():
            out.append(TextDelta(text=held))
        if cut.hit:
            break
        out.append(delta)
    return out


def _usage_at_stop(request: GenerationRequest, cut: StopCut) -> TokenUsage:
    """The upstream reports usage only at its end, which a stop string cuts off: about four characters a token,
    as for a chat upstream's input_tokens (the README says so)."""
    return TokenUsage(input_tokens=estimate_input_tokens(request), output_tokens=max(1, cut.produced // 4))
