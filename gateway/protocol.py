"""Responses API wire types: request, items, content parts, tools, the response object.

Every polymorphic family is a tagged union on `type`. Unknown item, part and tool
types are wrapped by `normalize.py` into the `Unknown*` structs, so decoding never
fails on a type the API grows tomorrow. Input and output items share structs
(clients echo our items back); optional fields left UNSET are omitted on output.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "CONTENT_PART_TAGS",
    "HOSTED_TOOL_TYPES",
    "INPUT_ITEM_TAGS",
    "TOOL_TAGS",
    "ContentPart",
    "ConversationRef",
    "CustomTool",
    "CustomToolCall",
    "CustomToolCallOutput",
    "FunctionCall",
    "FunctionCallOutput",
    "FunctionTool",
    "HostedTool",
    "IncompleteDetails",
    "InputFile",
    "InputImage",
    "InputItem",
    "InputText",
    "InputTokensDetails",
    "ItemReference",
    "LocalShellCall",
    "LocalShellCallOutput",
    "LocalShellTool",
    "Message",
    "NamespaceTool",
    "OutputItem",
    "OutputText",
    "OutputTokensDetails",
    "Reasoning",
    "ReasoningConfig",
    "ReasoningText",
    "Refusal",
    "Response",
    "ResponseError",
    "ResponsesRequest",
    "SummaryText",
    "TextConfig",
    "Tool",
    "ToolChoice",
    "UnknownItem",
    "UnknownPart",
    "UnknownTool",
    "Usage",
]


class _Tagged(Struct, tag_field="type", kw_only=True):
    pass


# ---------------------------------------------------------------- content parts


class InputText(_Tagged, tag="input_text", kw_only=True):
    text: str


class InputImage(_Tagged, tag="input_image", kw_only=True):
    image_url: str | None = None
    file_id: str | None = None
    detail: str = "auto"


class InputFile(_Tagged, tag="input_file", kw_only=True):
    file_data: str | None = None
    file_url: str | None = None
    file_id: str | None = None
    filename: str | None = None


class OutputText(_Tagged, tag="output_text", kw_only=True):
    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class Refusal(_Tagged, tag="refusal", kw_only=True):
    refusal: str


class ReasoningText(_Tagged, tag="reasoning_text", kw_only=True):
    text: str


class SummaryText(_Tagged, tag="summary_text", kw_only=True):
    text: str


class UnknownPart(_Tagged, tag="__unknown_part__", kw_only=True):
    """A content part of a type this gateway does not know (kept, not rejected)."""

    part_type: str
    data: dict[str, Any] = {}


ContentPart = InputText | InputImage | InputFile | OutputText | Refusal | ReasoningText | SummaryText | UnknownPart

# ---------------------------------------------------------------------- items

Role = Literal["user", "assistant", "system", "developer"]


class Message(_Tagged, tag="message", kw_only=True):
    id: str | UnsetType = UNSET
    role: Role
    content: str | list[ContentPart]
    status: str | UnsetType = UNSET
    phase: str | UnsetType = UNSET


class FunctionCall(_Tagged, tag="function_call", kw_only=True):
    id: str | UnsetType = UNSET
    call_id: str
    name: str
    arguments: str
    status: str | UnsetType = UNSET
    namespace: str | UnsetType = UNSET


class FunctionCallOutput(_Tagged, tag="function_call_output", kw_only=True):
    call_id: str
    output: str | list[ContentPart]
    id: str | UnsetType = UNSET
    status: str | UnsetType = UNSET


class CustomToolCall(_Tagged, tag="custom_tool_call", kw_only=True):
    id: str | UnsetType = UNSET
    call_id: str
    name: str
    input: str
    status: str | UnsetType = UNSET
    namespace: str | UnsetType = UNSET


class CustomToolCallOutput(_Tagged, tag="custom_tool_call_output", kw_only=True):
    call_id: str
    output: str | list[ContentPart]
    id: str | UnsetType = UNSET
    status: str | UnsetType = UNSET


class LocalShellCall(_Tagged, tag="local_shell_call", kw_only=True):
    id: str | UnsetType = UNSET
    call_id: str
    action: dict[str, Any]
    status: str | UnsetType = UNSET


class LocalShellCallOutput(_Tagged, tag="local_shell_call_output", kw_only=True):
    id: str
    output: str
    status: str | UnsetType = UNSET


class Reasoning(_Tagged, tag="reasoning", kw_only=True):
    id: str | UnsetType = UNSET
    summary: list[SummaryText] = []
    content: list[ReasoningText] | UnsetType | None = UNSET
    encrypted_content: str | UnsetType | None = UNSET
    status: str | UnsetType = UNSET


class ItemReference(_Tagged, tag="item_reference", kw_only=True):
    id: str


class UnknownItem(_Tagged, tag="__unknown_item__", kw_only=True):
    """An input item of a type this gateway does not model (web_search_call, compaction, ...)."""

    item_type: str
    data: dict[str, Any] = {}


InputItem = (
    Message
    | FunctionCall
    | FunctionCallOutput
    | CustomToolCall
    | CustomToolCallOutput
    | LocalShellCall
    | LocalShellCallOutput
    | Reasoning
    | ItemReference
    | UnknownItem
)
OutputItem = Message | FunctionCall | CustomToolCall | Reasoning

# ---------------------------------------------------------------------- tools


class FunctionTool(_Tagged, tag="function", kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomTool(_Tagged, tag="custom", kw_only=True):
    name: str
    description: str | None = None
    format: dict[str, Any] | None = None


class NamespaceTool(_Tagged, tag="namespace", kw_only=True):
    name: str
    description: str | None = None
    tools: list[Tool] = []


class LocalShellTool(_Tagged, tag="local_shell", kw_only=True):
    pass


class HostedTool(_Tagged, tag="__hosted__", kw_only=True):
    """A tool OpenAI runs server-side (web_search, file_search, mcp, ...)."""

    tool_type: str
    options: dict[str, Any] = {}


class UnknownTool(_Tagged, tag="__unknown_tool__", kw_only=True):
    tool_type: str
    options: dict[str, Any] = {}


Tool = FunctionTool | CustomTool | NamespaceTool | LocalShellTool | HostedTool | UnknownTool

HOSTED_TOOL_TYPES = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "web_search_2025_08_26",
        "file_search",
        "code_interpreter",
        "image_generation",
        "computer",
        "computer_use",
        "computer_use_preview",
        "mcp",
        "tool_search",
        "programmatic_tool_calling",
        "shell",
        "apply_patch",
    }
)


def _tags(union: Any) -> frozenset[str]:
    return frozenset(
        t.__struct_config__.tag for t in union.__args__ if not t.__struct_config__.tag.startswith("__")
    )


INPUT_ITEM_TAGS = _tags(InputItem)
CONTENT_PART_TAGS = _tags(ContentPart)
TOOL_TAGS = _tags(Tool)

# -------------------------------------------------------------------- request


class TextConfig(Struct, kw_only=True):
    format: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "text"})
    verbosity: str | None = None


class ReasoningConfig(Struct, kw_only=True):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


PositiveInt = Annotated[int, Meta(ge=1)]


ToolChoice = Literal["none", "auto", "required"] | dict[str, Any]


class ConversationRef(Struct, kw_only=True):
    id: str


class ResponsesRequest(Struct, kw_only=True):
    """POST /v1/responses. Unknown top-level fields are ignored, never rejected."""

    model: str
    input: list[InputItem] = []
    instructions: str | None = None
    stream: bool = False
    store: bool = True
    background: bool = False
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    tools: list[Tool] = []
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    max_output_tokens: PositiveInt | None = None
    max_tool_calls: PositiveInt | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: dict[str, str] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    user: str | None = None
    service_tier: str | None = None

    def conversation_id(self) -> str | None:
        """`conversation` is an id or `{"id": ...}` (normalize.py has checked the shape)."""
        value = self.conversation
        if isinstance(value, dict):
            value = value.get("id")
        return value if isinstance(value, str) else None


# ------------------------------------------------------------------- response


class InputTokensDetails(Struct, kw_only=True):
    cached_tokens: int = 0


class OutputTokensDetails(Struct, kw_only=True):
    reasoning_tokens: int = 0


class Usage(Struct, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(Struct, kw_only=True):
    code: str
    message: str


class IncompleteDetails(Struct, kw_only=True):
    reason: str


Status = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]


class Response(Struct, kw_only=True):
    """The response object, field order as the API sends it."""

    id: str
    object: str = "response"
    created_at: int
    status: Status
    background: bool = False
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    model: str
    output: list[OutputItem] = []
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    prompt_cache_key: str | None = None
    reasoning: ReasoningConfig = msgspec.field(default_factory=ReasoningConfig)
    safety_identifier: str | None = None
    service_tier: str = "default"
    store: bool = True
    temperature: float | None = None
    text: TextConfig = msgspec.field(default_factory=TextConfig)
    tool_choice: Any = "auto"
    tools: list[Any] = []
    top_logprobs: int = 0
    top_p: float | None = None
    truncation: str = "disabled"
    usage: Usage | None = None
    user: str | None = None
    metadata: dict[str, str] = {}
    completed_at: int | None = None
    conversation: ConversationRef | None = None  # the conversation the response ran in


def output_text(response: Response) -> str:
    """Concatenated assistant text, like the SDK's `response.output_text`."""
    return "".join(
        part.text
        for item in response.output
        if isinstance(item, Message) and isinstance(item.content, list)
        for part in item.content
        if isinstance(part, OutputText)
    )

