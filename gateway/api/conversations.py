"""The Conversations API: /v1/conversations and their items. A conversation is visible only to the API key
that created it (on an open API, to everyone)."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, post
from litestar import Response as HttpResponse
from litestar.params import FromPath

from gateway.access import ACCESS, Access, caller_of
from gateway.api.bodies import json_response, read_body
from gateway.api.context import runtime_of, store_of
from gateway.api.stored import integer_param, order_param
from gateway.errors import InvalidRequest
from gateway.ids import now
from gateway.normalize import check_metadata, decode_object, item_to_wire, items_from_wire
from gateway.store import new_tag, tag_of
from gateway.store.conversations import Conversations
from gateway.turn import assign_ids, resolve_references

__all__ = ["CONVERSATION_ROUTES"]

AnyRequest = Request[Any, Any, Any]


def _conversations(request: AnyRequest) -> Conversations:
    return store_of(request).conversations


def _owner(request: AnyRequest) -> str:
    return caller_of(request).owner


def _no_include(request: AnyRequest) -> None:
    """`include` asks for data (logprobs, encrypted reasoning, search results) this gateway never keeps."""
    if request.query_params.getall("include", []) or request.query_params.getall("include[]", []):
        raise InvalidRequest("`include` is not supported for conversation items by this gateway.", param="include")


async def _items_body(request: AnyRequest, *, required: bool) -> tuple[dict[str, Any], list[Any]]:
    body = decode_object(await read_body(request))
    raw = body.get("items")
    if raw is None and required:
        raise InvalidRequest("Missing required parameter: 'items'.", param="items", code="missing_required_parameter")
    if raw is not None and not isinstance(raw, list):
        raise InvalidRequest("Invalid 'items': expected an array of items.", param="items")
    items = items_from_wire(raw or [], "items")
    config = runtime_of(request).config
    if len(items) > config.server.max_input_items:
        raise InvalidRequest(f"Too many items: {len(items)} (this gateway accepts {config.server.max_input_items}).",
                             param="items")
    # A conversation holds items, never references to them: resolve them now (400 naming an unknown one).
    caller = caller_of(request)
    items = await resolve_references(store_of(request), items, lambda model: caller.may_read(model, config),
                                     param="items")
    return body, items


@post("/v1/conversations", status_code=200, opt={ACCESS: Access.CLIENT})
async def create_conversation(request: AnyRequest) -> HttpResponse[bytes]:
    body, items = await _items_body(request, required=False)
    metadata = body.get("metadata") or {}
    check_metadata(metadata)
    if not isinstance(metadata, dict):
        raise InvalidRequest("Invalid 'metadata': expected an object.", param="metadata")
    tag = new_tag()
    stored, _ = assign_ids(items, tag)
    conversation = await _conversations(request).create(
        owner=_owner(request), metadata=metadata, items=stored, created_at=now(), tag=tag
    )
    return json_response(conversation.to_wire())


@get("/v1/conversations/{conversation_id:str}", opt={ACCESS: Access.CLIENT})
async def retrieve_conversation(request: AnyRequest, conversation_id: FromPath[str]) -> HttpResponse[bytes]:
    return json_response((await _conversations(request).get(conversation_id, _owner(request))).to_wire())


@post("/v1/conversations/{conversation_id:str}", status_code=200, opt={ACCESS: Access.CLIENT})
async def update_conversation(request: AnyRequest, conversation_id: FromPath[str]) -> HttpResponse[bytes]:
    body = decode_object(await read_body(request))
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        raise InvalidRequest("Missing required parameter: 'metadata' (an object).", param="metadata", code="missing_required_parameter")
    check_metadata(metadata)
    updated = await _conversations(request).update(conversation_id, _owner(request), metadata)
    return json_response(updated.to_wire())


@delete("/v1/conversations/{conversation_id:str}", status_code=200, opt={ACCESS: Access.CLIENT})
async def delete_conversation(request: AnyRequest, conversation_id: FromPath[str]) -> HttpResponse[bytes]:
    await _conversations(request).delete(conversation_id, _owner(request))
    return json_response({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


@get("/v1/conversations/{conversation_id:str}/items", opt={ACCESS: Access.CLIENT})
async def list_conversation_items(request: AnyRequest, conversation_id: FromPath[str]) -> HttpResponse[bytes]:
    _no_include(request)
    query = request.query_params
    limit = integer_param(query.get("limit"), "limit", default=20, low=1, high=100)
    order = order_param(query.get("order"))
    after = query.get("after")
    page = await _conversations(request).list_items(conversation_id, _owner(request), after=after, limit=limit,
                                                     order=order)
    data = [item_to_wire(item) for item in page.items]
    return json_response({
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    })


@post("/v1/conversations/{conversation_id:str}/items", status_code=200, opt={ACCESS: Access.CLIENT})
async def add_conversation_items(request: AnyRequest, conversation_id: FromPath[str]) -> HttpResponse[bytes]:
    _no_include(request)
    _, items = await _items_body(request, required=True)
    tag = tag_of(conversation_id) or new_tag()  # an id without a tag is not found by the store below
    stored, _ = assign_ids(items, tag)
    await _conversations(request).add_items(conversation_id, _owner(request), stored)
    data = [item_to_wire(item) for item in stored]
    return json_response({
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": False,
    })


@get("/v1/conversations/{conversation_id:str}/items/{item_id:str}", opt={ACCESS: Access.CLIENT})
async def retrieve_conversation_item(
    request: AnyRequest, conversation_id: FromPath[str], item_id: FromPath[str]
) -> HttpResponse[bytes]:
    _no_include(request)
    item = await _conversations(request).get_item(conversation_id, _owner(request), item_id)
    return json_response(item_to_wire(item))


@delete("/v1/conversations/{conversation_id:str}/items/{item_id:str}", status_code=200, opt={ACCESS: Access.CLIENT})
async def delete_conversation_item(
    request: AnyRequest, conversation_id: FromPath[str], item_id: FromPath[str]
) -> HttpResponse[bytes]:
    conversation = await _conversations(request).delete_item(conversation_id, _owner(request), item_id)
    return json_response(conversation.to_wire())


CONVERSATION_ROUTES = [
    create_conversation,
    retrieve_conversation,
    update_conversation,
    delete_conversation,
    list_conversation_items,
    add_conversation_items,
    retrieve_conversation_item,
    delete_conversation_item,
]
