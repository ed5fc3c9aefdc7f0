"""Pure parts of a turn and of stored-response pages: ids for stored input items, and input-item pages."""

from __future__ import annotations

import pytest

from gateway.api.stored import page_items
from gateway.errors import InvalidRequest
from gateway.protocol import FunctionCallOutput, Message, Reasoning, UnknownItem
from gateway.store import new_tag, tag_of
from gateway.turn import assign_ids


def test_assign_ids_fills_only_missing_ids_with_the_chain_tag() -> None:
    tag = new_tag()
    items = [
        Message(role="user", content="a"),
        Message(id="msg_client", role="user", content="b"),
        FunctionCallOutput(call_id="c", output="x"),
        Reasoning(summary=[]),
        UnknownItem(item_type="compaction", data={"encrypted_content": "z"}),
        UnknownItem(item_type="web_search_call", data={"id": "ws_1"}),
    ]
    out, new = assign_ids(items, tag)
    ids = [i.data["id"] if isinstance(i, UnknownItem) else i.id for i in out]  # type: ignore[union-attr]
    assert ids[1] == "msg_client" and ids[5] == "ws_1"
    assert [ids[0][:4], ids[2][:4], ids[3][:3], ids[4][:5]] == ["msg_", "fco_", "rs_", "item_"]
    assert new == [ids[0], ids[2], ids[3], ids[4]]
    assert all(tag_of(i) == tag for i in new)
    assert out[4].data["encrypted_content"] == "z"  # type: ignore[union-attr]
    assert items[0].id is not None and assign_ids([], tag) == ([], [])


ITEMS = [{"id": f"i{n}", "type": "message"} for n in range(5)]


@pytest.mark.parametrize(
    ("after", "limit", "order", "ids", "has_more"),
    [
        (None, 20, "desc", ["i4", "i3", "i2", "i1", "i0"], False),
        (None, 2, "asc", ["i0", "i1"], True),
        ("i1", 2, "asc", ["i2", "i3"], True),
        ("i3", 2, "asc", ["i4"], False),
        ("i3", 2, "desc", ["i2", "i1"], True),
        ("i0", 5, "desc", [], False),
    ],
)
def test_pages(after: str | None, limit: int, order: str, ids: list[str], has_more: bool) -> None:
    page = page_items(ITEMS, after=after, limit=limit, order=order)
    assert [i["id"] for i in page["data"]] == ids and page["has_more"] is has_more and page["object"] == "list"
    assert page["first_id"] == (ids[0] if ids else None) and page["last_id"] == (ids[-1] if ids else None)


def test_an_unknown_cursor_is_rejected() -> None:
    with pytest.raises(InvalidRequest) as caught:
        page_items(ITEMS, after="nope", limit=2, order="asc")
    assert caught.value.param == "after"
