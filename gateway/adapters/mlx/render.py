"""Chat messages → the dicts a model's own chat template consumes, normalised for strict templates.

Agent histories break many templates: Codex puts its instructions in `developer`
messages, sends several system-ish messages and consecutive user turns. So:

- `developer` always becomes `system` (templates rarely know the role; some drop it silently);
- leading system messages are merged into one; a later one stays where it is: as a system
  message if the template accepts one there, else as a user turn marked as system text.
  Merging it into the leading one would change the prompt from its first tokens, so the
  turn would reuse nothing of the prefix cache (Codex sends developer messages mid-session);
- a template without a system role gets the system text at the top of the first user turn;
- consecutive user turns are joined when the template demands alternation;
- assistant tool calls keep their call ids, arguments become objects when they are JSON,
  reasoning travels as `reasoning_content` and the template decides whether to show it.

Which rules a template needs is found once per model by `probe_rules`, rendering a
few sentinel conversations. Everything here is deterministic: the same messages
always render to the same bytes, which the prefix cache relies on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from msgspec import Struct

from gateway.adapters.base import GenerationRequest, TemplateMessage, ToolSpec

__all__ = ["LATE_SYSTEM_PREFIX", "LateSystem", "RenderRules", "normalize_for_template", "probe_rules", "template_kwargs", "tool_dicts"]

TemplateFn = Callable[[list[dict[str, Any]]], str]
SEPARATOR = "\n\n"


LateSystem = Literal["system", "user", "merge"]
LATE_SYSTEM_PREFIX = "System: "  # how a later system message reads when it has to travel as a user turn


class RenderRules(Struct, frozen=True, kw_only=True):
    late_system: LateSystem = "system"  # a system message after the first turn: kept | as a user turn | merged
    system_role: bool = True  # False: the template has no system role
    merge_users: bool = False  # consecutive user turns become one


def probe_rules(render: TemplateFn, system_messages: str = "auto") -> RenderRules:
    """Ask the template what it accepts, with sentinel contents that must survive rendering."""

    def accepts(*turns: tuple[str, str]) -> bool:
        messages = [{"role": role, "content": f"probe-sentinel-{i}-{role}"} for i, (role, _) in enumerate(turns)]
        try:
            text = render(messages)
        except Exception:
            return False
        return all(m["content"] in text for m in messages)

    system_role = accepts(("system", ""), ("user", ""))
    late_system: LateSystem
    if system_messages == "merge":
        late_system = "merge"
    elif system_messages == "keep" and system_role:
        late_system = "system"
    elif system_messages == "auto" and system_role and accepts(
        ("system", ""), ("user", ""), ("assistant", ""), ("system", ""), ("user", "")
    ):
        late_system = "system"
    else:
        late_system = "user"
    merge_users = not accepts(("user", ""), ("user", ""))
    return RenderRules(late_system=late_system, system_role=system_role, merge_users=merge_users)


def normalize_for_template(messages: Sequence[TemplateMessage], rules: RenderRules) -> list[dict[str, Any]]:
    """The template-ready message list for `messages` under `rules`."""
    leading: list[str] = []
    body: list[dict[str, Any]] = []
    for message in messages:
        role = "system" if message.role == "developer" else message.role
        if role == "system":
            if not body or rules.late_system == "merge":
                leading.append(message.content)
            elif rules.late_system == "system":
                body.append({"role": "system", "content": message.content})
            else:
                body.append({"role": "user", "content": LATE_SYSTEM_PREFIX + message.content})
        elif role == "assistant":
            body.append(_assistant(message))
        elif role == "tool":
            body.append(_tool(message))
        else:
            body.append({"role": "user", "content": message.content})
    if rules.merge_users:
        body = _join_consecutive_users(body)
    system_text = SEPARATOR.join(text for text in leading if text)
    if not system_text:
        return body
    if rules.system_role:
        return [{"role": "system", "content": system_text}, *body]
    if body and body[0]["role"] == "user":
        first = {**body[0], "content": _join(system_text, body[0]["content"])}
        return [first, *body[1:]]
    return [{"role": "user", "content": system_text}, *body]


def _assistant(message: TemplateMessage) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.reasoning:
        turn["reasoning_content"] = message.reasoning
    if message.tool_calls:
        turn["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return turn


def _arguments(text: str) -> Any:
    """Templates expect an object (`arguments | tojson`, `arguments.items()`); keep text that is not one."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def _tool(message: TemplateMessage) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": "tool", "content": message.content, "tool_call_id": message.tool_call_id or ""}
    if message.name:
        turn["name"] = message.name
    return turn


def _join_consecutive_users(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    joined: list[dict[str, Any]] = []
    for turn in body:
        if joined and turn["role"] == "user" and joined[-1]["role"] == "user":
            joined[-1] = {**joined[-1], "content": _join(joined[-1]["content"], turn["content"])}
        else:
            joined.append(turn)
    return joined


def _join(first: str, second: str) -> str:
    return SEPARATOR.join(text for text in (first, second) if text)


def tool_dicts(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """The OpenAI chat-completions tool shape, which chat templates and mlx-lm's tool parsers expect."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


THINKING_OFF = frozenset({"none", "minimal"})


def thinking_asked(request: GenerationRequest) -> bool | None:
    """Whether the request's reasoning effort asks the model to think (None: it does not say)."""
    return None if request.reasoning_effort is None else request.reasoning_effort not in THINKING_OFF


def template_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """The manifest's `chat_template_kwargs`, with thinking switched by the request's reasoning effort."""
    kwargs = dict(request.chat_template_kwargs)
    if (asked := thinking_asked(request)) is not None:
        kwargs["enable_thinking"] = asked
    return kwargs
