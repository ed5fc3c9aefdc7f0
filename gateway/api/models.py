"""GET /v1/models and /v1/models/{id}: the models (names and aliases) this caller may use."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar import Response as HttpResponse
from litestar.params import FromPath

from gateway.access import ACCESS, Access, caller_of
from gateway.api.bodies import json_response
from gateway.api.context import runtime_of
from gateway.errors import ModelNotFound
from gateway.model_lookup import resolve_model

__all__ = ["MODEL_ROUTES"]


@get("/v1/models", opt={ACCESS: Access.CLIENT})
async def list_models(request: Request[Any, Any, Any]) -> HttpResponse[bytes]:
    """Every name a request may put in "model": each model the caller may use, followed by its aliases
    (clients that discover models here, rather than from a config file, would never see an alias otherwise)."""
    runtime = runtime_of(request)
    models = caller_of(request).visible_models(runtime.config)
    names = [name for model in models for name in (model.name, *model.aliases)]
    return json_response({"object": "list", "data": [_model_object(name, runtime.started_at) for name in names]})


@get("/v1/models/{model_id:path}", opt={ACCESS: Access.CLIENT})
async def get_model(request: Request[Any, Any, Any], model_id: FromPath[str]) -> HttpResponse[bytes]:
    runtime = runtime_of(request)
    name = model_id.lstrip("/")
    model = resolve_model(runtime.config, name)
    if not caller_of(request).may_use(model):  # as absent as in the listing
        raise ModelNotFound(name)
    return json_response(_model_object(name, runtime.started_at))  # an alias is retrieved as it is listed


def _model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "mlx-gateway"}


MODEL_ROUTES = [list_models, get_model]
