"""Validate builtins against a msgspec type and report *every* problem with its path.

msgspec stops at the first error; a person fixing a manifest wants all of them at
once. This walks structs, tagged unions, lists and dicts itself and lets msgspec
judge each leaf, so messages stay msgspec's own (`models[1].port: Expected int...`).
"""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec

__all__ = ["problems_for"]


def problems_for(value: Any, type_: Any, path: str = "") -> list[str]:
    problems: list[str] = []
    _walk(value, type_, path, problems)
    return problems


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _walk(value: Any, tp: Any, path: str, out: list[str]) -> None:
    origin = typing.get_origin(tp)
    if tp is Any:
        return
    if _is_struct(tp):
        _walk_struct(value, tp, path, out)
        return
    if origin in (typing.Union, types.UnionType):
        _walk_union(value, typing.get_args(tp), tp, path, out)
        return
    if origin is list and isinstance(value, list):
        (item_type,) = typing.get_args(tp)
        for i, item in enumerate(value):
            _walk(item, item_type, f"{path}[{i}]", out)
        return
    if origin is dict and isinstance(value, dict):
        key_type, value_type = typing.get_args(tp)
        for key, item in value.items():
            _leaf(key, key_type, _join(path, str(key)), out)
            _walk(item, value_type, _join(path, str(key)), out)
        return
    _leaf(value, tp, path, out)


def _walk_struct(value: Any, tp: type[msgspec.Struct], path: str, out: list[str]) -> None:
    config = tp.__struct_config__
    if not isinstance(value, dict):
        out.append(f"{path or '(top level)'}: expected a mapping, got {_kind(value)}")
        return
    if config.tag is not None and value.get(config.tag_field) != config.tag:
        got = value.get(config.tag_field)
        message = f"expected {config.tag!r}, got {got!r}" if config.tag_field in value else "required"
        out.append(f"{_join(path, str(config.tag_field))}: {message}")
        return
    fields = {f.encode_name: f for f in msgspec.structs.fields(tp)}
    for key in value:
        if key not in fields and key != config.tag_field:
            known = ", ".join(fields) or "none"
            out.append(f"{_join(path, str(key))}: unknown key (known keys: {known})")
    for name, field in fields.items():
        if name not in value:
            if field.required:
                out.append(f"{_join(path, name)}: required")
            continue
        _walk(value[name], field.type, _join(path, name), out)


def _walk_union(value: Any, args: tuple[Any, ...], tp: Any, path: str, out: list[str]) -> None:
    if value is None and type(None) in args:
        return
    structs = [a for a in args if _is_struct(a)]
    tagged = [s for s in structs if s.__struct_config__.tag is not None]
    if tagged and isinstance(value, dict):
        tag_field = tagged[0].__struct_config__.tag_field
        by_tag = {s.__struct_config__.tag: s for s in tagged}
        tag = value.get(tag_field)
        if tag not in by_tag:
            options = ", ".join(repr(t) for t in by_tag)
            problem = f"expected one of {options}, got {tag!r}" if tag_field in value else "required"
            out.append(f"{_join(path, tag_field)}: {problem}")
            return
        _walk(value, by_tag[tag], path, out)
        return
    non_null = [a for a in args if a is not type(None)]
    if len(non_null) == 1:
        _walk(value, non_null[0], path, out)
        return
    if len(structs) == 1 and isinstance(value, dict):
        _walk(value, structs[0], path, out)
        return
    _leaf(value, tp, path, out)


def _leaf(value: Any, tp: Any, path: str, out: list[str]) -> None:
    try:
        msgspec.convert(value, tp)
    except msgspec.ValidationError as exc:
        message = str(exc).split(" - at `", 1)[0]
        allowed = _literals(tp)
        if allowed and message.startswith("Invalid enum value"):
            message += f" (allowed: {', '.join(str(v) for v in allowed)})"
        out.append(f"{path or '(top level)'}: {message}")


def _literals(tp: Any) -> list[Any]:
    """The values a Literal (or a union of Literals and None) admits."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return list(typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return [v for arg in typing.get_args(tp) for v in _literals(arg)]
    return []


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
