"""Small HTTP helpers shared by the route modules."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response as HttpResponse

__all__ = ["json_response"]

_JSON = msgspec.json.Encoder()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse[bytes]:
    """`obj` (a Struct or builtins) as an `application/json` response."""
    return HttpResponse(_JSON.encode(obj), status_code=status, media_type="application/json", headers=headers)
