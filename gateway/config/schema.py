"""The manifest's schema: frozen, typed structs (unknown keys are errors). Loading is `loading.py`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "ALLOWED_ACTIONS",
    "ApiKey",
    "AuthConfig",
    "ClientProfile",
    "DummyArch",
    "GatewayConfig",
    "ItemRulesConfig",
    "MlxModel",
    "MlxSettings",
    "MlxTesting",
    "ModelSpec",
    "PolicyConfig",
    "Sampling",
    "Script",
    "ScriptCall",
    "ScriptStep",
    "ScriptedModel",
    "ServerConfig",
    "StoreConfig",
    "ToolAction",
    "ToolRulesConfig",
    "UpstreamModel",
]


class Base(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Manifest structs: immutable, and a key the schema does not know is an error."""


Port = Annotated[int, Meta(ge=0, le=65535)]
Positive = Annotated[int, Meta(ge=1)]
EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ModelName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$", max_length=256)]


class ServerConfig(Base, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 8080
    max_body_bytes: Positive = 32 * 1024 * 1024
    body_timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] = 30.0  # a body still arriving then gets 408
    keepalive_seconds: Annotated[float, Meta(gt=0, le=10)] = 5.0
    watch_manifest: bool = True
    allow_public_without_keys: bool = False
    max_input_items: Positive = 10000
    max_tools: Positive = 512
    shutdown_grace_seconds: Annotated[float, Meta(ge=0, le=3600)] = 30.0


class StoreConfig(Base, frozen=True):
    url: str = "memory://"
    ttl_seconds: Positive = 30 * 24 * 3600
    key_prefix: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._:-]+$")] = "mlxgw"
    max_chain_depth: Positive = 1000
    # Short on purpose: with Redis down, requests that need the store get a 503 at once.
    connect_timeout_seconds: Annotated[float, Meta(gt=0, le=30)] = 0.5
    timeout_seconds: Annotated[float, Meta(gt=0, le=60)] = 2.0
    # Store round trips at once (the connection pools' size); more wait their turn while the queue moves.
    max_connections: Annotated[int, Meta(ge=1, le=10000)] = 64
    # memory:// only: above this, the least recently used chains are evicted whole.
    memory_max_mb: Annotated[int, Meta(ge=1, le=1048576)] = 512
    # A running response's owner renews a lease this long; a replica that dies leaves its responses to be
    # marked failed (`response_lost`) by the next reader once it lapses.
    owner_lease_seconds: Annotated[float, Meta(ge=1, le=300)] = 10.0


class Sampling(Base, frozen=True):
    """Defaults applied when a request does not set them."""

    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_output_tokens: Positive | None = None


class ScriptCall(Base, frozen=True):
    """One tool call the scripted model makes: `function:` or `custom:` (exactly one)."""

    function: str | None = None
    custom: str | None = None
    arguments: dict[str, Any] | str | None = None
    input: str | None = None
    call_id: str | None = None


class ScriptStep(Base, frozen=True):
    """What the scripted model answers when the conversation holds N tool outputs."""

    reasoning: str | None = None
    text: str | None = None
    calls: list[ScriptCall] = []
    error: str | None = None  # fail the response after emitting the rest


class Script(Base, frozen=True):
    mode: Literal["steps", "echo"] = "steps"
    steps: list[ScriptStep] = []
    chunk_chars: Positive = 8
    delay_ms: Annotated[float, Meta(ge=0)] = 0.0
    first_delay_ms: Annotated[float, Meta(ge=0)] = 0.0


class ModelBase(Base, frozen=True, tag_field="adapter"):
    name: ModelName
    aliases: list[ModelName] = []
    context_length: Positive = 32768
    sampling: Sampling = Sampling()
    chat_template_kwargs: dict[str, Any] = {}
    policy: str = "default"
    # text.format / response_format / tool_choice enforced while decoding (gateway/constraints.py) where the adapter
    # can; where it cannot: `enforce` answers unconstrained and says so (x-gateway-degraded), `strict` is a 400
    # naming the parameter; `off` never constrains (and says so).
    constraints: Literal["enforce", "strict", "off"] = "enforce"

    @property
    def kind(self) -> str:
        """The `adapter:` the manifest names (`scripted`, `mlx`): the struct's tag."""
        tag = self.__struct_config__.tag
        assert isinstance(tag, str), "every model class declares its adapter tag"
        return tag


class ScriptedModel(ModelBase, frozen=True, tag="scripted", kw_only=True):
    """A deterministic model for tests and for checking client wiring without weights."""

    script: Script = Script()


class DummyArch(Base, frozen=True):
    """`source: dummy`: a qwen2-shaped model with seeded random weights and a locally trained tokenizer."""

    hidden_size: Positive = 64
    layers: Positive = 2
    heads: Positive = 2
    kv_heads: Positive = 1
    intermediate_size: Positive = 128
    vocab_size: Annotated[int, Meta(ge=512, le=262144)] = 1024
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    seed: int = 0


class MlxTesting(Base, frozen=True):
    """Test-only hooks; never set them for real use. `force: last_user` makes the model emit the
    last user message verbatim (then EOS) through a logits processor; `\\x1f` in it splits
    tokenization so markers can arrive as several tokens. `step_delay_ms` slows each decode step.
    `distinct` bars tokens already generated, so greedy output depends on the whole ranking of the
    logits instead of settling into one repeated token (batching and prefix-cache tests)."""

    force: Literal["last_user"] | None = None
    step_delay_ms: Annotated[float, Meta(ge=0, le=10000)] = 0.0
    distinct: bool = False


class MlxModel(ModelBase, frozen=True, tag="mlx", kw_only=True):
    """A model served by mlx-lm in its own worker process."""

    source: Annotated[str, Meta(min_length=1)]  # hf:<org>/<repo> | a local directory | dummy
    revision: str | None = None
    dummy: DummyArch | None = None
    preload: bool = False
    idle_unload_seconds: Annotated[float, Meta(gt=0)] | None = None
    tool_parser: Annotated[str, Meta(pattern=r"^[a-z0-9_]+$")] | None = None
    system_messages: Literal["auto", "merge", "keep", "user"] = "auto"
    threads: Positive | None = None
    max_batch: Annotated[int, Meta(ge=1, le=256)] = 8  # sequences decoded together (continuous batching)
    max_queued: Positive = 64  # requests waiting beyond max_batch; more are refused with 429
    prefix_cache_mb: Annotated[float, Meta(ge=0)] = 1024.0  # KV caches kept for prompt prefix reuse; 0: off
    # The least time between two frames of one response's deltas (joined meanwhile); the first token goes at once.
    stream_interval_ms: Annotated[float, Meta(ge=0, le=1000)] = 50.0
    load_timeout_seconds: Annotated[float, Meta(gt=0)] = 900.0
    testing: MlxTesting | None = None


class UpstreamModel(ModelBase, frozen=True, tag="upstream", kw_only=True):
    """A model another server runs (a `gateway run` on another machine, mlx_lm.server, vLLM, llama.cpp...), reached
    over HTTP. The gateway keeps the store, policies and Responses semantics; the upstream sees stateless requests."""

    base_url: Annotated[str, Meta(min_length=1)] | Annotated[list[str], Meta(min_length=1)]  # one per replica, ".../v1"
    api: Literal["chat", "responses"] = "chat"
    model: str | None = None  # the upstream's name for it (default: `name`)
    api_key_env: EnvName | None = None  # sent as `Authorization: Bearer ...`
    connect_timeout_seconds: Annotated[float, Meta(gt=0, le=300)] = 5.0
    # Waiting for the upstream's answer to begin, and then between two chunks of its stream.
    read_timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] = 300.0
    max_connections: Annotated[int, Meta(ge=1, le=10000)] = 100  # per replica
    retries: Annotated[int, Meta(ge=0, le=10)] = 2  # further attempts, only before the client's first byte
    # A replica failing this many times in a row is skipped for `breaker_open_seconds`, then probed.
    breaker_failures: Annotated[int, Meta(ge=1, le=1000)] = 3
    breaker_open_seconds: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    vision: bool = False  # the upstream model accepts images
    # The upstream enforces response_format / text.format and tool_choice (vLLM, SGLang, OpenAI, another gateway);
    # false for engines that ignore them (mlx_lm.server), so `constraints` applies its enforce/strict rules.
    structured_output: bool = False

    @property
    def base_urls(self) -> list[str]:
        urls = [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)
        return [url.rstrip("/") for url in urls]

    @property
    def upstream_model(self) -> str:
        return self.model or self.name


ModelSpec = ScriptedModel | MlxModel | UpstreamModel


ToolAction = Literal["native", "wrap", "expand", "drop", "note", "reject"]

# Which actions make sense for which kind of tool (checks.py refuses the others; policies/tools.py applies them).
ALLOWED_ACTIONS: dict[str, frozenset[str]] = {
    "function": frozenset({"native", "drop", "note", "reject"}),
    "custom": frozenset({"wrap", "drop", "note", "reject"}),
    "namespace": frozenset({"expand", "drop", "note", "reject"}),
    "local_shell": frozenset({"drop", "note", "reject"}),
    "hosted": frozenset({"drop", "note", "reject"}),
    "unknown": frozenset({"drop", "note", "reject"}),
}


class ToolRulesConfig(Base, frozen=True):
    """Per tool kind, per wire type, or per tool name: what the model gets. Unset keys inherit."""

    function: ToolAction | UnsetType = UNSET
    custom: ToolAction | UnsetType = UNSET
    namespace: ToolAction | UnsetType = UNSET
    local_shell: ToolAction | UnsetType = UNSET
    hosted: ToolAction | UnsetType = UNSET
    unknown: ToolAction | UnsetType = UNSET
    types: dict[str, ToolAction] = {}
    names: dict[str, ToolAction] = {}


class ItemRulesConfig(Base, frozen=True):
    unknown: Literal["text", "drop", "reject"] | UnsetType = UNSET
    reasoning: Literal["keep", "drop"] | UnsetType = UNSET
    images: Literal["note", "reject"] | UnsetType = UNSET


class PolicyConfig(Base, frozen=True):
    """One named layer of tool and item rules."""

    tools: ToolRulesConfig = ToolRulesConfig()
    items: ItemRulesConfig = ItemRulesConfig()


class ClientProfile(Base, frozen=True):
    """Requests whose headers match (every regex, case-insensitive names) get `policy` on top."""

    name: str
    match: dict[str, str]
    policy: str
    models: list[str] = []


class ApiKey(Base, frozen=True):
    """A client key: its value is read from the environment variable `env`; `models` limits what it may use."""

    name: Annotated[str, Meta(min_length=1, max_length=64)]
    env: EnvName
    models: list[str] = []


class AuthConfig(Base, frozen=True):
    """Secrets are never written in the manifest: it names the environment variables holding them."""

    admin_key_env: EnvName | None = None
    keys: list[ApiKey] = []


class MlxSettings(Base, frozen=True):
    """Shared by every mlx model: how many may be loaded at once, and where dummy models are built."""

    max_loaded_models: Positive | None = None
    max_memory_gb: Annotated[float, Meta(gt=0)] | None = None
    slot_wait_seconds: Annotated[float, Meta(ge=0)] = 120.0
    # While a model waits for a request's first token, the other models' workers pause between steps (running about
    # a quarter of the time), so that prefill gets the cores: models share a machine without one's stream making
    # another's agent wait.
    first_token_priority: bool = True
    cache_dir: str | None = None  # default: $MLXGW_CACHE_DIR, else ~/.cache/mlx-gateway
    # Local model sources must lie inside one of these directories (empty: any). A manifest an admin
    # can hot-reload must not be able to point a worker at arbitrary files.
    allowed_paths: list[str] = []


class GatewayConfig(Base, frozen=True):
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    store: StoreConfig = StoreConfig()
    models: list[ModelSpec] = []
    policies: dict[str, PolicyConfig] = {}
    clients: list[ClientProfile] = []
    mlx: MlxSettings = MlxSettings()

    def model_names(self) -> list[str]:
        return [m.name for m in self.models]
