"""The manifest (`gateway.yaml`): frozen, typed structs; every problem reported with its path."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import UNSET, Meta, Struct, UnsetType

from gateway.validation import problems_for

__all__ = [
    "ApiKey",
    "AuthConfig",
    "ClientProfile",
    "ConfigError",
    "DummyArch",
    "ItemRulesConfig",
    "ToolAction",
    "ToolRulesConfig",
    "GatewayConfig",
    "MlxModel",
    "MlxSettings",
    "MlxTesting",
    "ModelSpec",
    "PolicyConfig",
    "Sampling",
    "ScriptCall",
    "ScriptStep",
    "ScriptedModel",
    "ServerConfig",
    "StoreConfig",
    "apply_environment",
    "load_config",
    "parse_config",
]


class Base(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Manifest structs: immutable, and a key the schema does not know is an error."""


Port = Annotated[int, Meta(ge=0, le=65535)]
Positive = Annotated[int, Meta(ge=1)]
ModelName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$", max_length=256)]


class ServerConfig(Base):
    host: str = "127.0.0.1"
    port: Port = 8080
    max_body_bytes: Positive = 32 * 1024 * 1024
    keepalive_seconds: Annotated[float, Meta(gt=0, le=10)] = 5.0
    watch_manifest: bool = True
    allow_public_without_keys: bool = False
    max_input_items: Positive = 10000
    max_tools: Positive = 512
    shutdown_grace_seconds: Annotated[float, Meta(ge=0, le=3600)] = 30.0


class StoreConfig(Base):
    url: str = "memory://"
    ttl_seconds: Positive = 30 * 24 * 3600
    key_prefix: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._:-]+$")] = "mlxgw"
    max_chain_depth: Positive = 1000
    # Short on purpose: with Redis down, requests that need the store get a 503 at once.
    connect_timeout_seconds: Annotated[float, Meta(gt=0, le=30)] = 0.5
    timeout_seconds: Annotated[float, Meta(gt=0, le=60)] = 2.0


class Sampling(Base):
    """Defaults applied when a request does not set them."""

    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_output_tokens: Positive | None = None


class ScriptCall(Base):
    """One tool call the scripted model makes: `function:` or `custom:` (exactly one)."""

    function: str | None = None
    custom: str | None = None
    arguments: dict[str, Any] | str | None = None
    input: str | None = None
    call_id: str | None = None


class ScriptStep(Base):
    """What the scripted model answers when the conversation holds N tool outputs."""

    reasoning: str | None = None
    text: str | None = None
    calls: list[ScriptCall] = []
    error: str | None = None  # fail the response after emitting the rest


class Script(Base):
    mode: Literal["steps", "echo"] = "steps"
    steps: list[ScriptStep] = []
    chunk_chars: Positive = 8
    delay_ms: Annotated[float, Meta(ge=0)] = 0.0
    first_delay_ms: Annotated[float, Meta(ge=0)] = 0.0


class ModelBase(Base, tag_field="adapter"):
    name: ModelName
    aliases: list[ModelName] = []
    context_length: Positive = 32768
    sampling: Sampling = Sampling()
    chat_template_kwargs: dict[str, Any] = {}
    policy: str = "default"


class ScriptedModel(ModelBase, tag="scripted", kw_only=True):
    """A deterministic model for tests and for checking client wiring without weights."""

    script: Script = Script()


class DummyArch(Base):
    """`source: dummy`: a qwen2-shaped model with seeded random weights and a locally trained tokenizer."""

    hidden_size: Positive = 64
    layers: Positive = 2
    heads: Positive = 2
    kv_heads: Positive = 1
    intermediate_size: Positive = 128
    vocab_size: Annotated[int, Meta(ge=512, le=262144)] = 1024
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    seed: int = 0


class MlxTesting(Base):
    """Test-only hooks; never set them for real use. `force: last_user` makes the model emit the
    last user message verbatim (then EOS) through a logits processor; `\\x1f` in it splits
    tokenization so markers can arrive as several tokens. `step_delay_ms` slows each decode step."""

    force: Literal["last_user"] | None = None
    step_delay_ms: Annotated[float, Meta(ge=0, le=10000)] = 0.0


class MlxModel(ModelBase, tag="mlx", kw_only=True):
    """A model served by mlx-lm in its own worker process."""

    source: Annotated[str, Meta(min_length=1)]  # hf:<org>/<repo> | a local directory | dummy
    revision: str | None = None
    dummy: DummyArch | None = None
    preload: bool = False
    idle_unload_seconds: Annotated[float, Meta(gt=0)] | None = None
    tool_parser: Annotated[str, Meta(pattern=r"^[a-z0-9_]+$")] | None = None
    system_messages: Literal["auto", "merge", "keep"] = "auto"
    threads: Positive | None = None
    max_queued: Positive = 64
    load_timeout_seconds: Annotated[float, Meta(gt=0)] = 900.0
    testing: MlxTesting | None = None


ModelSpec = ScriptedModel | MlxModel


ToolAction = Literal["native", "wrap", "expand", "drop", "note", "reject"]


class ToolRulesConfig(Base):
    """Per tool kind, per wire type, or per tool name: what the model gets. Unset keys inherit."""

    function: ToolAction | UnsetType = UNSET
    custom: ToolAction | UnsetType = UNSET
    namespace: ToolAction | UnsetType = UNSET
    local_shell: ToolAction | UnsetType = UNSET
    hosted: ToolAction | UnsetType = UNSET
    unknown: ToolAction | UnsetType = UNSET
    types: dict[str, ToolAction] = {}
    names: dict[str, ToolAction] = {}


class ItemRulesConfig(Base):
    unknown: Literal["text", "drop", "reject"] | UnsetType = UNSET
    reasoning: Literal["keep", "drop"] | UnsetType = UNSET
    images: Literal["note", "reject"] | UnsetType = UNSET


class PolicyConfig(Base):
    """One named layer of tool and item rules."""

    tools: ToolRulesConfig = ToolRulesConfig()
    items: ItemRulesConfig = ItemRulesConfig()


class ClientProfile(Base):
    """Requests whose headers match (every regex, case-insensitive names) get `policy` on top."""

    name: str
    match: dict[str, str]
    policy: str
    models: list[str] = []


EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class ApiKey(Base):
    """A client key: its value is read from the environment variable `env`; `models` limits what it may use."""

    name: Annotated[str, Meta(min_length=1, max_length=64)]
    env: EnvName
    models: list[str] = []


class AuthConfig(Base):
    """Secrets are never written in the manifest: it names the environment variables holding them."""

    admin_key_env: EnvName | None = None
    keys: list[ApiKey] = []


class MlxSettings(Base):
    """Shared by every mlx model: how many may be loaded at once, and where dummy models are built."""

    max_loaded_models: Positive | None = None
    max_memory_gb: Annotated[float, Meta(gt=0)] | None = None
    slot_wait_seconds: Annotated[float, Meta(ge=0)] = 120.0
    cache_dir: str | None = None  # default: $MLXGW_CACHE_DIR, else ~/.cache/mlx-gateway
    # Local model sources must lie inside one of these directories (empty: any). A manifest an admin
    # can hot-reload must not be able to point a worker at arbitrary files.
    allowed_paths: list[str] = []


class GatewayConfig(Base):
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    store: StoreConfig = StoreConfig()
    models: list[ModelSpec] = []
    policies: dict[str, PolicyConfig] = {}
    clients: list[ClientProfile] = []
    mlx: MlxSettings = MlxSettings()

    def model_names(self) -> list[str]:
        return [m.name for m in self.models]


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
        raw = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"{where}invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if raw is None:
        raw = {}
    problems = problems_for(raw, GatewayConfig)
    if problems:
        raise ConfigError(source, problems)
    config = msgspec.convert(raw, GatewayConfig)
    problems = semantic_problems(config)
    if problems:
        raise ConfigError(source, problems)
    return config


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
    from gateway.policies.tools import ALLOWED_ACTIONS  # the table lives with the engine

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


def _path_problems(model: MlxModel, allowed: list[str], path: str) -> list[str]:
    if not allowed or model.source == "dummy" or model.source.startswith("hf:"):
        return []
    source = Path(model.source).expanduser().resolve()
    roots = [Path(root).expanduser().resolve() for root in allowed]
    if any(source == root or root in source.parents for root in roots):
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

