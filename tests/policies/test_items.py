from __future__ import annotations

import json

import pytest

from gateway.errors import InvalidRequest
from gateway.normalize import decode_request
from gateway.policies.items import IMAGE_NOTE, ItemRules, apply_item_rules
from gateway.protocol import InputText, Reasoning, UnknownItem

ITEMS = [
    {"role": "user", "content": [{"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": "data:x"}]},
    {"type": "reasoning", "summary": [], "content": None},
    {"type": "web_search_call", "id": "ws"},
    {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "data:y"}]},
]


def items():  # type: ignore[no-untyped-def]
    return decode_request(json.dumps({"model": "m", "input": ITEMS}).encode()).input


@pytest.mark.parametrize(
    ("rules", "vision", "kinds", "degradations"),
    [
        (ItemRules(), False, ["Message", "Reasoning", "UnknownItem", "FunctionCallOutput"],
         ["item:image:note", "item:web_search_call:text", "item:image:note"]),
        (ItemRules(), True, ["Message", "Reasoning", "UnknownItem", "FunctionCallOutput"], ["item:web_search_call:text"]),
        (ItemRules(unknown="drop", reasoning="drop"), True, ["Message", "FunctionCallOutput"],
         ["item:reasoning:drop", "item:web_search_call:drop"]),
    ],
)
def test_item_rules(rules, vision, kinds, degradations) -> None:  # type: ignore[no-untyped-def]
    kept, found = apply_item_rules(items(), rules, vision=vision)
    assert [type(i).__name__ for i in kept] == kinds
    assert found == degradations
    if not vision:
        assert kept[0].content == [InputText(text="look"), InputText(text=IMAGE_NOTE)]
        assert kept[3].output == [InputText(text=IMAGE_NOTE)]
    else:
        assert kept[0].content[1].image_url == "data:x"


@pytest.mark.parametrize(
    ("rules", "param", "code"),
    [
        (ItemRules(unknown="reject"), "input[2]", "unsupported_item"),
        (ItemRules(images="reject"), "input[0].content[1]", "unsupported_image"),
    ],
)
def test_reject_names_the_item(rules, param, code) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest) as info:
        apply_item_rules(items(), rules, vision=False)
    assert info.value.param == param and info.value.code == code


def test_history_items_have_no_param_when_rejected() -> None:
    history = [UnknownItem(item_type="compaction")]
    with pytest.raises(InvalidRequest) as info:
        apply_item_rules(history, ItemRules(unknown="reject"), vision=False, first_index=-1)
    assert info.value.param is None and "compaction" in info.value.message


def test_reasoning_kept_by_default() -> None:
    kept, _ = apply_item_rules([Reasoning(summary=[])], ItemRules(), vision=False)
    assert kept == [Reasoning(summary=[])]
