"""Manifest checks the types alone cannot express: references between sections, duplicate names,
actions that cannot apply, store URLs, model sources. Pure functions over a decoded `GatewayConfig`."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from msgspec import UNSET

from gateway.config.schema import ALLOWED_ACTIONS, GatewayConfig, MlxModel, Script, ScriptedModel, UpstreamModel

__all__ = ["STORE_SCHEMES", "available_tool_parsers", "semantic_problems"]


def semantic_problems(config: GatewayConfig) -> list[str]:
    """Cross-references the types alone cannot express."""
    problems: list[str] = []
    owner: dict[str, str] = {}
    for i, model in enumerate(config.models):
        for j, name in enumerate([model.name, *model.aliases]):
            where = f"models[{i}].name" if j == 0 else f"models[{i}].aliases[{j - 1}]"
            if name in owner:
                problems.append(f"{where}: '{name}' is already used by {owner[name]}")
            else:
                owner[name] = where
        if model.policy != "default" and model.policy not in config.policies:
            known = ", ".join(sorted({"default", *config.policies})) or "default"
            problems.append(f"models[{i}].policy: unknown policy '{model.policy}' (known: {known})")
        if isinstance(model, ScriptedModel):
            problems.extend(_script_problems(model.script, f"models[{i}].script"))
        if isinstance(model, MlxModel):
            problems.extend(_mlx_problems(model, f"models[{i}]"))
            problems.extend(_path_problems(model, config.mlx.allowed_paths, f"models[{i}].source"))
        if isinstance(model, UpstreamModel):
            problems.extend(_upstream_problems(model, f"models[{i}].base_url"))
            if model.api == "responses" and model.chat_template_kwargs:
                problems.append(f"models[{i}].chat_template_kwargs: a Responses upstream (api: responses) takes no "
                                "chat template arguments; set them on the model host's own model")
    problems.extend(_policy_problems(config))
    scheme = config.store.url.split("://", 1)[0] if "://" in config.store.url else ""
    if scheme not in STORE_SCHEMES:
        problems.append(
            f"store.url: unsupported URL '{config.store.url}' (use one of: "
            + ", ".join(f"{s}://" for s in sorted(STORE_SCHEMES))
            + ")"
        )
    if not config.server.host.strip():
        problems.append("server.host: must not be empty")
    return problems


def _policy_problems(config: GatewayConfig) -> list[str]:

    problems = []
    for name, policy in config.policies.items():
        for kind, allowed in ALLOWED_ACTIONS.items():
            action = getattr(policy.tools, kind)
            if action is not UNSET and action not in allowed:
                problems.append(
                    f"policies.{name}.tools.{kind}: '{action}' does not apply to {kind} tools "
                    f"(use one of: {', '.join(sorted(allowed))})"
                )
    names = {m.name for m in config.models} | {a for m in config.models for a in m.aliases}
    seen_keys: set[str] = set()
    for i, key in enumerate(config.auth.keys):
        if key.name in seen_keys:
            problems.append(f"auth.keys[{i}].name: '{key.name}' is used by another key")
        seen_keys.add(key.name)
        for j, model in enumerate(key.models):
            if model not in names:
                problems.append(f"auth.keys[{i}].models[{j}]: unknown model '{model}'")
    for i, client in enumerate(config.clients):
        if client.policy not in config.policies:
            problems.append(f"clients[{i}].policy: unknown policy '{client.policy}'")
        if not client.match:
            problems.append(f"clients[{i}].match: give at least one header pattern")
        for header, pattern in client.match.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"clients[{i}].match.{header}: invalid regular expression ({exc})")
        for j, model in enumerate(client.models):
            if model not in names:
                problems.append(f"clients[{i}].models[{j}]: unknown model '{model}'")
    return problems


STORE_SCHEMES = frozenset(
    {"memory", "redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel"}
)


def _script_problems(script: Script, path: str) -> list[str]:
    problems = []
    if script.mode == "steps" and not script.steps:
        problems.append(f"{path}.steps: a steps script needs at least one step")
    for i, step in enumerate(script.steps):
        if not (step.reasoning or step.text or step.calls or step.error):
            problems.append(f"{path}.steps[{i}]: an empty step (give text, reasoning, calls or error)")
        for j, call in enumerate(step.calls):
            where = f"{path}.steps[{i}].calls[{j}]"
            if (call.function is None) == (call.custom is None):
                problems.append(f"{where}: give exactly one of 'function' or 'custom'")
            elif call.custom is not None and call.arguments is not None:
                problems.append(f"{where}.arguments: a custom call takes 'input', not 'arguments'")
            elif call.function is not None and call.input is not None:
                problems.append(f"{where}.input: a function call takes 'arguments', not 'input'")
    return problems


def _mlx_problems(model: MlxModel, path: str) -> list[str]:
    problems = []
    source = model.source
    if source.startswith("hf:") and not re.fullmatch(r"hf:[A-Za-z0-9][\w.-]*/[\w.-]+", source):
        problems.append(f"{path}.source: '{source}' is not hf:<org>/<repo>")
    if model.dummy is not None and source != "dummy":
        problems.append(f"{path}.dummy: only applies to source: dummy")
    if model.revision is not None and not source.startswith("hf:"):
        problems.append(f"{path}.revision: only applies to hf: sources")
    if model.tool_parser is not None:
        known = available_tool_parsers()
        if known and model.tool_parser not in known:
            problems.append(f"{path}.tool_parser: unknown parser '{model.tool_parser}' (known: {', '.join(known)})")
    return problems


def _upstream_problems(model: UpstreamModel, path: str) -> list[str]:
    problems = []
    urls = [model.base_url] if isinstance(model.base_url, str) else model.base_url
    for j, url in enumerate(urls):
        where = path if isinstance(model.base_url, str) else f"{path}[{j}]"
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            problems.append(f"{where}: '{url}' is not a URL ({exc})")
            continue
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"{where}: '{url}' is not an http:// or https:// URL with a host")
        elif parts.query or parts.fragment or parts.username or parts.password:
            problems.append(f"{where}: '{url}' must not carry a query, fragment or credentials (use api_key_env)")
    if len({url.rstrip("/") for url in urls}) != len(urls):
        problems.append(f"{path}: the same replica is listed twice")
    return problems


def _path_problems(model: MlxModel, allowed: list[str], path: str) -> list[str]:
    """The same test the worker applies again, to the resolved directory, when it loads the model."""
    from gateway.adapters.mlx.source import within_allowed

    if not allowed or model.source == "dummy" or model.source.startswith("hf:"):
        return []
    if within_allowed(Path(model.source).expanduser().resolve(), allowed):
        return []
    return [f"{path}: '{model.source}' is outside mlx.allowed_paths ({', '.join(allowed)})"]


def available_tool_parsers() -> list[str]:
    """mlx-lm's tool parser modules, found on disk so the gateway never imports MLX."""
    import importlib.util

    spec = importlib.util.find_spec("mlx_lm")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "tool_parsers"
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
