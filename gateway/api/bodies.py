"""Small HTTP helpers shared by the route modules: JSON responses and reading a request body."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request
from litestar import Response as HttpResponse
from litestar.exceptions import HTTPException

from gateway.errors import ClientDisconnected, RequestTimeout

__all__ = ["json_response", "read_body"]

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
