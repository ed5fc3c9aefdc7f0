"""Adapter registry: the manifest's `adapter:` kind → a factory."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from gateway.adapters.base import Adapter, Capabilities, Delta, GenerationRequest
from gateway.adapters.mlx import MlxAdapter, WorkerPool
from gateway.adapters.scripted import ScriptedAdapter
from gateway.adapters.upstream import UpstreamAdapter
from gateway.config import MlxModel, ModelSpec, ScriptedModel, UpstreamModel

__all__ = ["ADAPTERS", "Adapter", "Capabilities", "Delta", "GenerationRequest", "WorkerPool", "build_adapter"]


# A factory is only ever handed a spec of its own kind (build_adapter looks it up by the spec's tag).
def _scripted(spec: ModelSpec, pool: WorkerPool) -> Adapter:
    assert isinstance(spec, ScriptedModel)
    return ScriptedAdapter(spec)


def _mlx(spec: ModelSpec, pool: WorkerPool) -> Adapter:
    assert isinstance(spec, MlxModel)
    return MlxAdapter(spec, pool)


def _upstream(spec: ModelSpec, pool: WorkerPool) -> Adapter:
    assert isinstance(spec, UpstreamModel)
    return UpstreamAdapter(spec)


# Factories take the spec and the pool shared by all mlx models (the Runtime owns it).
ADAPTERS: MappingProxyType[str, Callable[[ModelSpec, WorkerPool], Adapter]] = MappingProxyType(
    {"scripted": _scripted, "mlx": _mlx, "upstream": _upstream}
)


def build_adapter(spec: ModelSpec, pool: WorkerPool | None = None) -> Adapter:
    return ADAPTERS[spec.kind](spec, pool if pool is not None else WorkerPool())
