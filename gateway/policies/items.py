"""Item policy: what happens to input items a model cannot take as they are. Pure."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Struct

from gateway.errors import InvalidRequest
from gateway.protocol import (
    ContentPart,
    CustomToolCallOutput,
    FunctionCallOutput,
    InputImage,
    InputItem,
    InputText,
    Message,
    Reasoning,
    UnknownItem,
)

__all__ = ["IMAGE_NOTE", "ItemRules", "apply_item_rules"]

IMAGE_NOTE = "[image omitted: this model cannot see images]"


class ItemRules(Struct, frozen=True, kw_only=True):
    """A fully resolved item policy."""

    unknown: Literal["text", "drop", "reject"] = "text"
    reasoning: Literal["keep", "drop"] = "keep"
    images: Literal["note", "reject"] = "note"


def apply_item_rules(
    items: list[InputItem], rules: ItemRules, *, vision: bool, first_index: int = 0
) -> tuple[list[InputItem], list[str]]:
    """Return the items to render and the degradations applied.

    `first_index` is the position of `items[0]` in the request's `input`, so a
    rejection names the right `param` even when history was prepended.
    """
    kept: list[InputItem] = []
    degradations: list[str] = []
    for offset, item in enumerate(items):
        index = first_index + offset
        if isinstance(item, UnknownItem):
            if rules.unknown == "reject":
                raise InvalidRequest(
                    f"Input items of type '{item.item_type}' are not supported by this model (item policy: reject).",
                    param=f"input[{index}]" if index >= 0 else None,
                    code="unsupported_item",
                )
            degradations.append(f"item:{item.item_type}:{rules.unknown}")
            if rules.unknown == "drop":
                continue
        elif isinstance(item, Reasoning) and rules.reasoning == "drop":
            degradations.append("item:reasoning:drop")
            continue
        elif not vision and isinstance(item, (Message, FunctionCallOutput, CustomToolCallOutput)):
            item = _without_images(item, rules, index, degradations)
        kept.append(item)
    return kept, degradations


def _without_images(item, rules: ItemRules, index: int, degradations: list[str]):
    field = "content" if isinstance(item, Message) else "output"
    parts = getattr(item, field)
    if isinstance(parts, str) or not any(isinstance(p, InputImage) for p in parts):
        return item
    new_parts: list[ContentPart] = []
    for j, part in enumerate(parts):
        if not isinstance(part, InputImage):
            new_parts.append(part)
            continue
        if rules.images == "reject":
            raise InvalidRequest(
                "This model cannot take images (item policy: reject).",
                param=f"input[{index}].{field}[{j}]" if index >= 0 else None,
                code="unsupported_image",
            )
        degradations.append("item:image:note")
        new_parts.append(InputText(text=IMAGE_NOTE))
    return msgspec.structs.replace(item, **{field: new_parts})
