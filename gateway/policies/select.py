"""Which rules apply to a request: built-in defaults, then `policies.default`, then the
model's policy, then matching client profiles (a profile limited to models last).
Later layers win key by key. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from msgspec import UNSET, Struct

from gateway.config import ClientProfile, GatewayConfig, ModelSpec, PolicyConfig
from gateway.policies.items import ItemRules
from gateway.policies.tools import ToolRules

__all__ = ["Rules", "matching_profiles", "select_rules"]


class Rules(Struct, frozen=True, kw_only=True):
    tools: ToolRules = ToolRules()
    items: ItemRules = ItemRules()
    layers: tuple[str, ...] = ()


def matching_profiles(
    profiles: list[ClientProfile], model: ModelSpec, headers: Mapping[str, str]
) -> list[ClientProfile]:
    lowered = {k.lower(): v for k, v in headers.items()}
    names = {model.name, *model.aliases}
    matched = [
        p
        for p in profiles
        if (not p.models or names & set(p.models))
        and all(re.search(rx, lowered.get(h.lower(), ""), re.IGNORECASE) for h, rx in p.match.items())
    ]
    return sorted(matched, key=lambda p: bool(p.models))  # stable: profiles naming models are more specific


def select_rules(config: GatewayConfig, model: ModelSpec, headers: Mapping[str, str]) -> Rules:
    layers: list[tuple[str, PolicyConfig]] = []
    if "default" in config.policies:
        layers.append(("default", config.policies["default"]))
    if model.policy != "default" and model.policy in config.policies:
        layers.append((model.policy, config.policies[model.policy]))
    for profile in matching_profiles(config.clients, model, headers):
        if profile.policy in config.policies:
            layers.append((f"client:{profile.name}", config.policies[profile.policy]))
    tools: dict[str, Any] = {}
    items: dict[str, Any] = {}
    types: dict[str, Any] = {}
    names: dict[str, Any] = {}
    for _, layer in layers:
        tools.update(_set_fields(layer.tools, exclude=("types", "names")))
        types.update(layer.tools.types)
        names.update(layer.tools.names)
        items.update(_set_fields(layer.items))
    return Rules(
        tools=ToolRules(**tools, types=types, names=names),
        items=ItemRules(**items),
        layers=tuple(name for name, _ in layers),
    )


def _set_fields(struct: Struct, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        name: getattr(struct, name)
        for name in struct.__struct_fields__
        if name not in exclude and getattr(struct, name) is not UNSET
    }
