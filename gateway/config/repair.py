"""What is left of a manifest once its type problems are set aside, so the cross-checks can run in the same pass.

A person fixing a manifest wants every problem at once, cross-references included. Each invalid value is
replaced by its field's default; where there is none, the entry holding it (a list element, a mapping
value) is left out. The leftover manifest converts cleanly, and `semantic_problems` runs on it; `Repair`
remembers what was left out so its findings can be reported at the paths the user wrote.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

import msgspec

__all__ = ["Repair", "repair"]


class _Dropped:
    """Marks a value that could not be kept."""


_DROPPED = _Dropped()
_SEGMENT = re.compile(r"\[(\d+)\]")
_PATH = re.compile(r"(?<![\w.'])[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*\[\d+\](?:\.[A-Za-z_][\w-]*|\[\d+\])*")


class Repair:
    """The repaired manifest, the indices each shortened list kept, and the names of the entries left out."""

    def __init__(self) -> None:
        self.value: Any = None
        self.kept: dict[str, list[int]] = {}
        self.dropped_names: set[str] = set()

    def original_path(self, problem: str) -> str:
        """A problem found in the repaired manifest, with list indices as the user wrote them (in its path and
        in any path its message names, such as `already used by models[0].name`)."""
        return _PATH.sub(lambda match: self._original(match.group(0)), problem)

    def _original(self, path: str) -> str:
        out, index = "", 0
        for match in _SEGMENT.finditer(path):
            prefix = out + path[index : match.start()]
            kept = self.kept.get(prefix)
            position = int(match.group(1))
            original = kept[position] if kept is not None and position < len(kept) else position
            out, index = f"{prefix}[{original}]", match.end()
        return out + path[index:]

    def mentions_dropped(self, problem: str) -> bool:
        """Whether a cross-check complains about an entry that was left out (an artefact of the repair)."""
        return any(f"'{name}'" in problem for name in self.dropped_names)


def repair(value: Any, type_: Any) -> Repair | None:
    """The manifest with its invalid parts replaced or left out; None if nothing usable is left."""
    result = Repair()
    repaired = _repair(value, type_, "", result)
    if isinstance(repaired, _Dropped):
        return None
    result.value = repaired
    return result


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _repair(value: Any, tp: Any, path: str, result: Repair) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if _is_struct(tp):
        return _struct(value, tp, path, result)
    if origin in (typing.Union, types.UnionType):
        return _union(value, typing.get_args(tp), tp, path, result)
    if origin is list and isinstance(value, list):
        (item_type,) = typing.get_args(tp)
        items, kept = [], []
        for i, item in enumerate(value):
            fixed = _repair(item, item_type, f"{path}[{i}]", result)
            if isinstance(fixed, _Dropped):
                _remember(item, result)
            else:
                items.append(fixed)
                kept.append(i)
        if len(kept) < len(value):
            result.kept[path] = kept
        return items
    if origin is dict and isinstance(value, dict):
        key_type, value_type = typing.get_args(tp)
        entries = {}
        for key, item in value.items():
            fixed = _repair(item, value_type, _join(path, str(key)), result)
            if isinstance(fixed, _Dropped) or not _fits(key, key_type):
                result.dropped_names.add(str(key))
            else:
                entries[key] = fixed
        return entries
    return value if _fits(value, tp) else _DROPPED


def _struct(value: Any, tp: type[msgspec.Struct], path: str, result: Repair) -> Any:
    config = tp.__struct_config__
    if not isinstance(value, dict) or (config.tag is not None and value.get(config.tag_field) != config.tag):
        return _DROPPED
    out: dict[str, Any] = {}
    if config.tag_field is not None and config.tag is not None:
        out[config.tag_field] = config.tag
    for field in msgspec.structs.fields(tp):
        if field.encode_name not in value:
            if field.required:
                return _DROPPED
            continue
        fixed = _repair(value[field.encode_name], field.type, _join(path, field.encode_name), result)
        if isinstance(fixed, _Dropped):
            if field.required:
                return _DROPPED
            continue  # the field's default stands in
        out[field.encode_name] = fixed
    return out


def _union(value: Any, args: tuple[Any, ...], tp: Any, path: str, result: Repair) -> Any:
    if value is None and type(None) in args:
        return None
    structs = [a for a in args if _is_struct(a)]
    tagged = [s for s in structs if s.__struct_config__.tag is not None]
    if tagged and isinstance(value, dict):
        by_tag = {s.__struct_config__.tag: s for s in tagged}
        chosen = by_tag.get(value.get(tagged[0].__struct_config__.tag_field))
        return _DROPPED if chosen is None else _struct(value, chosen, path, result)
    non_null = [a for a in args if a is not type(None)]
    if len(non_null) == 1:
        return _repair(value, non_null[0], path, result)
    if len(structs) == 1 and isinstance(value, dict):
        return _struct(value, structs[0], path, result)
    return value if _fits(value, tp) else _DROPPED


def _fits(value: Any, tp: Any) -> bool:
    try:
        msgspec.convert(value, tp)
    except msgspec.ValidationError:
        return False
    return True


def _remember(item: Any, result: Repair) -> None:
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        result.dropped_names.add(item["name"])
