"""Adapter registry: the manifest's `adapter:` kind → a factory."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from gateway.adapters.base import Adapter, Capabilities, Delta, GenerationRequest
from gateway.adapters.scripted import ScriptedAdapter
from gateway.config import ModelSpec

__all__ = ["ADAPTERS", "Adapter", "Capabilities", "Delta", "GenerationRequest", "build_adapter"]

ADAPTERS: MappingProxyType[str, Callable[[ModelSpec], Adapter]] = MappingProxyType(
    {"scripted": ScriptedAdapter}
)


def build_adapter(spec: ModelSpec) -> Adapter:
    kind = spec.__struct_config__.tag
    return ADAPTERS[kind](spec)  # type: ignore[index]
