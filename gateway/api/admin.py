"""Admin routes (guarded by the admin key)."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar import Response as HttpResponse

from gateway.access import ACCESS, Access
from gateway.api.bodies import json_response
from gateway.errors import InvalidRequest
from gateway.reload import Reloader, ReloadFailed

__all__ = ["ADMIN_ROUTES"]


@post("/admin/reload", status_code=200, opt={ACCESS: Access.ADMIN})
async def reload_manifest(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    reloader: Reloader | None = getattr(request.app.state, "reloader", None)
    if reloader is None:
        raise InvalidRequest("This gateway was started without a manifest file, so there is nothing to reload.")
    try:
        result = await reloader.reload("admin")
    except ReloadFailed as exc:
        raise InvalidRequest(
            "The manifest is invalid; the running one keeps serving: " + "; ".join(exc.problems),
            code="invalid_manifest",
        ) from None
    return json_response(result)


ADMIN_ROUTES = [reload_manifest]
