"""Small HTTP helpers shared by the route modules: JSON responses, reading a request body, and noticing a client
that leaves before its answer has started."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar import Response as HttpResponse
from litestar.exceptions import HTTPException

from gateway.errors import ClientDisconnected, RequestTimeout

__all__ = ["json_response", "read_body", "unless_client_leaves"]

T = TypeVar("T")

_JSON = msgspec.json.Encoder()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse[bytes]:
    """`obj` (a Struct or builtins) as an `application/json` response."""
    return HttpResponse(_JSON.encode(obj), status_code=status, media_type="application/json", headers=headers)


async def read_body(request: Request[Any, Any, Any]) -> bytes:
    """The whole body, within `server.body_timeout_seconds` (a stalled upload gets 408, not a held worker).

    Litestar reports a client that hangs up mid-body as a 500; it is the client's doing, so it is logged as 499.
    """
    timeout = request.app.state.runtime.config.server.body_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            return await request.body()
    except TimeoutError:
        raise RequestTimeout(
            f"The request body did not arrive within {timeout:g} s (server.body_timeout_seconds)."
        ) from None
    except HTTPException as exc:
        if exc.status_code == 500 and "disconnected" in str(exc.detail):
            raise ClientDisconnected("The client disconnected while sending the request.") from None
        raise


async def unless_client_leaves(request: Request[Any, Any, Any], work: Awaitable[T]) -> T:
    """`work`, cancelled if the client disconnects meanwhile (then `ClientDisconnected`, logged as 499): uvicorn does
    not cancel a handler whose client left, and Litestar watches for it only once a streamed body has started, so
    without this a non-streaming answer (or an upstream slow to answer) would be generated for nobody. The body
    has been read by now: the only message left to receive is the disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():  # the client left (or this handler is being cancelled): stop the work
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientDisconnected("The client disconnected before its answer was ready.")
    return task.result()


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    for _ in range(1000):  # bounded: after the body, a client can only disconnect
        if (await request.receive())["type"] == "http.disconnect":
            return
