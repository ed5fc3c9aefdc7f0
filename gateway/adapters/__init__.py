"""Adapter registry: the manifest's `adapter:` kind → a factory."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from gateway.adapters.base import Adapter, Capabilities, Delta, GenerationRequest
from gateway.adapters.mlx import MlxAdapter, WorkerPool
from gateway.adapters.scripted import ScriptedAdapter
from gateway.config import ModelSpec

__all__ = ["ADAPTERS", "Adapter", "Capabilities", "Delta", "GenerationRequest", "WorkerPool", "build_adapter"]


def _scripted(spec: ModelSpec, pool: WorkerPool) -> Adapter:
    return ScriptedAdapter(spec)  # type: ignore[arg-type]


# Factories take the spec and the pool shared by all mlx models (the Runtime owns it).
ADAPTERS: MappingProxyType[str, Callable[[ModelSpec, WorkerPool], Adapter]] = MappingProxyType(
    {"scripted": _scripted, "mlx": MlxAdapter}  # type: ignore[dict-item]
)


def build_adapter(spec: ModelSpec, pool: WorkerPool | None = None) -> Adapter:
    kind = spec.__struct_config__.tag
    return ADAPTERS[kind](spec, pool if pool is not None else WorkerPool())  # type: ignore[index]
