"""Request model name → manifest model (names and aliases)."""

from __future__ import annotations

from gateway.config import GatewayConfig, ModelSpec
from gateway.errors import ModelNotFound

__all__ = ["resolve_model"]


def resolve_model(config: GatewayConfig, name: str) -> ModelSpec:
    for model in config.models:
        if name == model.name or name in model.aliases:
            return model
    raise ModelNotFound(name)
