"""The adapter seam: a chat-shaped request in, a stream of deltas out.

Adapters never see HTTP, the store or Responses-API items. They receive chat
messages (what chat templates consume) and the function tools the policy chose to
show the model, and yield `Delta`s. Closing the iterator cancels the generation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

import msgspec
from msgspec import Struct

__all__ = [
    "Adapter",
    "Capabilities",
    "Constraint",
    "Delta",
    "Finish",
    "FinishReason",
    "GenerationRequest",
    "InputGrammar",
    "ReasoningDelta",
    "Tally",
    "TemplateMessage",
    "TextDelta",
    "TokenUsage",
    "ToolCallArguments",
    "ToolCallRecord",
    "ToolCallStart",
    "ToolSpec",
]


class ToolCallRecord(Struct, kw_only=True):
    """A tool call already in the history (assistant turn)."""

    call_id: str
    name: str
    arguments: str


class TemplateMessage(Struct, kw_only=True, omit_defaults=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] = []
    reasoning: str | None = None
    tool_calls: list[ToolCallRecord] = []
    tool_call_id: str | None = None
    name: str | None = None


class ToolSpec(Struct, kw_only=True, omit_defaults=True):
    """A function as the model sees it (after the tool policy)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object", "properties": {}})


class InputGrammar(Struct, kw_only=True, frozen=True):
    """A wrapped custom tool's grammar, rewritten for the JSON string that carries its input (gateway/grammars.py):
    Lark terminal definitions, `start` the one the whole string matches; `raw_rules` the same terminals, `start`
    included, for the input unescaped (call formats that carry parameters as they are)."""

    start: str
    rules: str
    raw_rules: str = ""


class Constraint(Struct, kw_only=True, frozen=True):
    """What the answer must be, enforced while decoding: JSON matching `schema` (the text answer), or, when
    `calls` is set, tool calls in the model's own call format to these tools (visible name -> arguments schema;
    a wrapped custom tool listed in `inputs` has its `input` string held to that grammar instead)."""

    schema: dict[str, Any] | None = None
    calls: dict[str, dict[str, Any]] = {}
    inputs: dict[str, InputGrammar] = {}
    parallel: bool = True  # more than one call allowed
    max_calls: int | None = None  # at most this many calls (max_tool_calls)
    optional: bool = False  # text, or text then calls (tool_choice "auto"): only the calls are held to `calls`


class GenerationRequest(Struct, kw_only=True):
    request_id: str
    messages: list[TemplateMessage]
    tools: list[ToolSpec] = []
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = []
    reasoning_effort: str | None = None
    prompt_cache_key: str | None = None
    chat_template_kwargs: dict[str, Any] = {}
    constraint: Constraint | None = None


class Capabilities(Struct, kw_only=True, frozen=True):
    tool_calling: bool = True
    vision: bool = False
    reasoning: bool = False
    # Output decoded by a model, token by token: its speed means something (not so for a scripted model).
    decodes: bool = True
    # Constrained decoding (constraints.py): JSON answers, and forced tool calls in the model's call format.
    constrains_json: bool = False
    constrains_calls: bool = False


# ------------------------------------------------------------------ deltas


class _Delta(Struct, tag_field="kind", kw_only=True):
    pass


class TextDelta(_Delta, tag="text", kw_only=True):
    text: str


class ReasoningDelta(_Delta, tag="reasoning", kw_only=True):
    text: str


class ToolCallStart(_Delta, tag="tool_call", kw_only=True):
    """Opens a tool call; following `ToolCallArguments` belong to it."""

    name: str
    call_id: str | None = None
    custom: bool = False  # raw-input (freeform) call rather than JSON arguments
    namespace: str | None = None  # set by the policy when mapping back an expanded namespace


class ToolCallArguments(_Delta, tag="tool_arguments", kw_only=True):
    text: str


class TokenUsage(Struct, kw_only=True, frozen=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


FinishReason = Literal["stop", "length", "tool_calls"]


class Finish(_Delta, tag="finish", kw_only=True):
    reason: FinishReason = "stop"
    usage: TokenUsage = TokenUsage()


class Tally(_Delta, tag="tally", kw_only=True):
    """The tokens counted so far. Adapters send it along the way, so that a response stopped before its
    `Finish` (a cancel, a client gone) still reports what it cost; it produces no event."""

    usage: TokenUsage


Delta = TextDelta | ReasoningDelta | ToolCallStart | ToolCallArguments | Finish | Tally


class Adapter(Protocol):
    """What the gateway needs from a model backend."""

    @property
    def capabilities(self) -> Capabilities:
        """What the model can do, as far as known now (the gateway only reads it)."""

    async def start(self) -> None:
        """Prepare (e.g. preload); called once at gateway start-up."""

    async def capabilities_ready(self) -> Capabilities:
        """`capabilities` once they are certain (an adapter that learns them only by loading loads first)."""

    async def count_input_tokens(self, request: GenerationRequest) -> int:
        """The prompt tokens `request` would cost, without generating (`usage.input_tokens` of the same request)."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Stream deltas, ending with exactly one `Finish`. Raise `GatewayError`s on failure."""

    async def open(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """`generate`, with whatever can fail before the first delta done first (connecting to an upstream and
        reading its status), so that a failure there can still be an HTTP error rather than `response.failed`.
        Adapters with nothing to do up front return `self.generate(request)`."""

    async def aclose(self) -> None:
        """Release everything; in-flight generations end."""

    def describe(self) -> dict[str, Any]:
        """State for /health and the status page."""
