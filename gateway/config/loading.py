"""Reading a manifest: YAML → every type problem with its path (validation.py) → the schema's structs →
the cross-checks (checks.py); then the one environment override."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec
import yaml

from gateway.config.checks import semantic_problems
from gateway.config.repair import repair
from gateway.config.schema import GatewayConfig
from gateway.config.validation import problems_for

__all__ = ["ConfigError", "apply_environment", "load_config", "parse_config"]


class ConfigError(Exception):
    """The manifest is invalid; `problems` lists each one as `path: message`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_config(text: str | bytes, source: str = "<manifest>") -> GatewayConfig:
    """Validate manifest text; raises `ConfigError` listing every problem found."""
    try:
        raw = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"{where}invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if raw is None:
        raw = {}
    problems = problems_for(raw, GatewayConfig)
    if problems:
        raise ConfigError(source, problems + _cross_check_the_rest(raw, problems))
    config = msgspec.convert(raw, GatewayConfig)
    problems = semantic_problems(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def _cross_check_the_rest(raw: object, type_problems: list[str]) -> list[str]:
    """Cross-check problems in what the type problems left valid, so one `gateway check` shows them all."""
    leftover = repair(raw, GatewayConfig)
    if leftover is None:
        return []
    try:
        config = msgspec.convert(leftover.value, GatewayConfig)
    except (msgspec.ValidationError, ValueError):
        return []
    paths = {problem.partition(": ")[0] for problem in type_problems}
    # A default standing in for a bad value can upset checks on its siblings (a bad script mode becomes
    # `steps`, which then has none): inside a repaired entry only references to other entries are kept.
    repaired = {path.rpartition(".")[0] + "." for path in paths if "." in path}
    found = (leftover.original_path(problem) for problem in semantic_problems(config))
    return [
        p for p in found
        if p.partition(": ")[0] not in paths and not leftover.mentions_dropped(p)
        and (_is_reference(p) or not any(p.startswith(prefix) for prefix in repaired))
    ]


def _is_reference(problem: str) -> bool:
    """A cross-reference problem: a name that points nowhere or is taken twice."""
    return ": unknown " in problem or "already used" in problem or "is used by another" in problem


def apply_environment(config: GatewayConfig, source: str, environ: Mapping[str, str]) -> GatewayConfig:
    """The one place the environment changes the manifest: MLXGW_STORE_URL replaces store.url
    (deployments keep one manifest and point each environment at its own Redis)."""
    url = environ.get("MLXGW_STORE_URL")
    if not url:
        return config
    config = msgspec.structs.replace(config, store=msgspec.structs.replace(config.store, url=url))
    problems = [p.replace("store.url:", "store.url (from MLXGW_STORE_URL):") for p in semantic_problems(config)]
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: str | Path, environ: Mapping[str, str] = os.environ) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the manifest: {exc.strerror or exc}"]) from None
    return apply_environment(parse_config(text, source=str(path)), str(path), environ)

