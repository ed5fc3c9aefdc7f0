"""Responses items → chat messages, the shape chat templates consume.

Pure and deterministic: the same items always give the same messages, which the
prefix cache depends on. Tool calls in the history are renamed the same way the
tool policy presented the tools (a wrapped custom tool appears as a function
whose single argument is the raw input; a namespace child under its flat name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from gateway.adapters.base import TemplateMessage, ToolCallRecord
from gateway.protocol import (
    ContentPart,
    CustomToolCall,
    CustomToolCallOutput,
    FunctionCall,
    FunctionCallOutput,
    InputFile,
    InputImage,
    InputItem,
    InputText,
    ItemReference,
    LocalShellCall,
    LocalShellCallOutput,
    Message,
    OutputText,
    Reasoning,
    ReasoningText,
    Refusal,
    SummaryText,
    UnknownItem,
    UnknownPart,
)

__all__ = ["CallNamer", "build_messages", "parts_text"]

_JSON = msgspec.json.Encoder()

CallNamer = Callable[[str, str | None, bool], tuple[str, str]]
"""(name, namespace, is_custom) of a historical call → (visible name, arguments wrapper key or "")."""


def _identity_namer(name: str, namespace: str | None, custom: bool) -> tuple[str, str]:
    return name, "input" if custom else ""


def parts_text(content: str | Sequence[ContentPart], separator: str = "\n\n") -> str:
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content:
        if isinstance(part, (InputText, OutputText, ReasoningText, SummaryText)):
            texts.append(part.text)
        elif isinstance(part, Refusal):
            texts.append(part.refusal)
        elif isinstance(part, InputFile):
            texts.append(f"[attached file: {part.filename or part.file_id or 'file'}]")
        elif isinstance(part, UnknownPart) and isinstance(part.data.get("text"), str):
            texts.append(part.data["text"])
    return separator.join(texts)


def _images(content: str | Sequence[ContentPart]) -> list[str]:
    if isinstance(content, str):
        return []
    return [p.image_url for p in content if isinstance(p, InputImage) and p.image_url]


class _Builder:
    def __init__(self, namer: CallNamer) -> None:
        self.messages: list[TemplateMessage] = []
        self.namer = namer
        self.pending_reasoning: list[str] = []
        self.call_names: dict[str, str] = {}

    def assistant(self, *, for_text: bool = False) -> TemplateMessage:
        """The assistant turn being built: reasoning, text and calls of one response share it.

        Text never joins a turn that already has calls (templates print content before
        calls, which would reorder the history), so it starts a new turn instead.
        """
        last = self.messages[-1] if self.messages else None
        if last is None or last.role != "assistant" or (for_text and last.tool_calls):
            last = TemplateMessage(role="assistant")
            self.messages.append(last)
        if self.pending_reasoning:
            joined = "\n".join(self.pending_reasoning)
            last.reasoning = f"{last.reasoning}\n{joined}" if last.reasoning else joined
            self.pending_reasoning = []
        return last

    def call(self, call_id: str, name: str, namespace: str | None, arguments: str, custom: bool) -> None:
        visible, wrapper = self.namer(name, namespace, custom)
        if wrapper:
            arguments = _JSON.encode({wrapper: arguments}).decode()
        self.call_names[call_id] = visible
        turn = self.assistant()
        turn.tool_calls = [*turn.tool_calls, ToolCallRecord(call_id=call_id, name=visible, arguments=arguments)]

    def tool_output(self, call_id: str, content: str | Sequence[ContentPart]) -> None:
        self.messages.append(
            TemplateMessage(
                role="tool",
                content=parts_text(content, "\n"),
                images=_images(content),
                tool_call_id=call_id,
                name=self.call_names.get(call_id),
            )
        )

    def add(self, item: InputItem) -> None:
        if isinstance(item, Message):
            if item.role == "assistant":
                turn = self.assistant(for_text=True)
                text = parts_text(item.content, "")
                turn.content = f"{turn.content}\n\n{text}" if turn.content and text else turn.content or text
            else:
                self.messages.append(
                    TemplateMessage(role=item.role, content=parts_text(item.content), images=_images(item.content))
                )
        elif isinstance(item, FunctionCall):
            namespace = item.namespace if isinstance(item.namespace, str) else None
            self.call(item.call_id, item.name, namespace, item.arguments, custom=False)
        elif isinstance(item, CustomToolCall):
            namespace = item.namespace if isinstance(item.namespace, str) else None
            self.call(item.call_id, item.name, namespace, item.input, custom=True)
        elif isinstance(item, LocalShellCall):
            self.call(item.call_id, "local_shell", None, _JSON.encode(item.action).decode(), custom=False)
        elif isinstance(item, (FunctionCallOutput, CustomToolCallOutput)):
            self.tool_output(item.call_id, item.output)
        elif isinstance(item, LocalShellCallOutput):
            self.tool_output(item.id, item.output)
        elif isinstance(item, Reasoning):
            text = _reasoning_text(item)
            if text:
                self.pending_reasoning.append(text)
        elif isinstance(item, UnknownItem):
            self.unknown(item)
        elif isinstance(item, ItemReference):
            raise ValueError(f"unresolved item_reference {item.id!r}")  # the store resolves these first

    def unknown(self, item: UnknownItem) -> None:
        text = f"[{item.item_type}] {_JSON.encode(item.data).decode()}"
        if item.item_type.endswith("_call"):
            turn = self.assistant(for_text=True)
            turn.content = f"{turn.content}\n{text}" if turn.content else text
        else:
            self.messages.append(TemplateMessage(role="user", content=text))


def _reasoning_text(item: Reasoning) -> str:
    if isinstance(item.content, list) and item.content:
        return "".join(p.text for p in item.content)
    return "\n".join(p.text for p in item.summary)


def build_messages(
    instructions: str | None,
    items: Sequence[InputItem],
    *,
    system_notes: Sequence[str] = (),
    namer: CallNamer = _identity_namer,
) -> list[TemplateMessage]:
    """Instructions (plus policy notes) first as a system message, then the items in order."""
    builder = _Builder(namer)
    preamble = "\n\n".join(text for text in (instructions, *system_notes) if text)
    if preamble:
        builder.messages.append(TemplateMessage(role="system", content=preamble))
    for item in items:
        builder.add(item)
    if builder.pending_reasoning:  # reasoning with nothing after it: keep it on an assistant turn
        builder.assistant()
    return builder.messages
