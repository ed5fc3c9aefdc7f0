"""Tool policy: which request tools the model sees, in what shape, and how calls map back.

Actions: `native` (a function as it is), `wrap` (a freeform custom tool shown as a
function with one string parameter), `expand` (a namespace flattened into its
children), `drop` (removed silently), `note` (removed, and the model is told), and
`reject` (400 naming the tool). Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from gateway.adapters.base import ToolSpec
from gateway.config import ALLOWED_ACTIONS, ToolAction
from gateway.errors import InvalidRequest
from gateway.protocol import (
    CustomTool,
    FunctionTool,
    HostedTool,
    LocalShellTool,
    NamespaceTool,
    Tool,
    ToolChoice,
    UnknownTool,
)

__all__ = [
    "NAMESPACE_SEPARATOR",
    "ToolAction",
    "ToolPlan",
    "ToolRoute",
    "ToolRules",
    "plan_tools",
    "resolve_tool_choice",
    "tool_kind",
]

NAMESPACE_SEPARATOR = "__"
WRAPPED_ARGUMENT = "input"
# Kinds whose tools are known by their wire type: `names:` also matches the type (an MCP tool's server_label first).
_TYPE_NAMED = frozenset({"hosted", "local_shell", "unknown"})

class ToolRules(Struct, frozen=True, kw_only=True):
    """A fully resolved tool policy."""

    function: ToolAction = "native"
    custom: ToolAction = "wrap"
    namespace: ToolAction = "expand"
    local_shell: ToolAction = "note"
    hosted: ToolAction = "note"
    unknown: ToolAction = "note"
    types: dict[str, ToolAction] = {}
    names: dict[str, ToolAction] = {}

    def action_for(self, kind: str, tool_type: str, name: str | None) -> ToolAction:
        # A tool with no name of its own (hosted, local_shell) is named by its type: `names: {image_generation: ...}`.
        for key in (name, tool_type if kind in _TYPE_NAMED else None):
            if key is not None and key in self.names:
                return self.names[key]
        if tool_type in self.types:
            return self.types[tool_type]
        return getattr(self, kind)


class ToolRoute(Struct, frozen=True, kw_only=True):
    """Where a model-visible function name came from."""

    name: str
    namespace: str | None = None
    custom: bool = False


class ToolPlan(Struct, kw_only=True):
    specs: list[ToolSpec] = []
    routes: dict[str, ToolRoute] = {}
    unavailable: list[str] = []
    degradations: list[str] = []

    def visible_name(self, name: str, namespace: str | None, custom: bool) -> tuple[str, str]:
        """How a historical call is shown to the model: (name, wrapper key or "")."""
        flat = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name
        route = self.routes.get(flat)
        wrapper = WRAPPED_ARGUMENT if custom else ""
        if route is None:
            return flat, wrapper
        return flat, WRAPPED_ARGUMENT if route.custom else ""


def tool_kind(tool: Tool) -> tuple[str, str, str | None]:
    """(policy kind, wire type, name) of a request tool."""
    if isinstance(tool, FunctionTool):
        return "function", "function", tool.name
    if isinstance(tool, CustomTool):
        return "custom", "custom", tool.name
    if isinstance(tool, NamespaceTool):
        return "namespace", "namespace", tool.name
    if isinstance(tool, LocalShellTool):
        return "local_shell", "local_shell", None
    if isinstance(tool, HostedTool):
        return "hosted", tool.tool_type, _hosted_name(tool.options)
    assert isinstance(tool, UnknownTool)
    return "unknown", tool.tool_type, _hosted_name(tool.options)


def _hosted_name(options: dict[str, Any]) -> str | None:
    for key in ("name", "server_label"):
        if isinstance(options.get(key), str):
            return options[key]
    return None


def plan_tools(tools: list[Tool], rules: ToolRules) -> ToolPlan:
    plan = ToolPlan()
    for index, tool in enumerate(tools):
        _plan_one(tool, rules, plan, f"tools[{index}]", namespace=None)
    return plan


def _plan_one(tool: Tool, rules: ToolRules, plan: ToolPlan, param: str, namespace: str | None) -> None:
    kind, tool_type, name = tool_kind(tool)
    label = name or tool_type
    action = rules.action_for(kind, tool_type, name)
    if action not in ALLOWED_ACTIONS[kind]:
        action = "note"  # e.g. `expand` configured for a function type: degrade visibly
    if action == "reject":
        raise InvalidRequest(
            f"The tool '{label}' (type '{tool_type}') is not supported by this model (tool policy: reject).",
            param=param,
            code="unsupported_tool",
        )
    if action in ("drop", "note"):
        plan.degradations.append(f"tool:{label}:{action}")
        if action == "note":
            plan.unavailable.append(label)
        return
    if isinstance(tool, FunctionTool):
        _add(plan, ToolSpec(name=_flat(namespace, tool.name), description=tool.description or "",
                            parameters=tool.parameters or {"type": "object", "properties": {}}),
             ToolRoute(name=tool.name, namespace=namespace))
    elif isinstance(tool, CustomTool):
        _add(plan, _wrapped_spec(tool, namespace), ToolRoute(name=tool.name, namespace=namespace, custom=True))
        plan.degradations.append(f"tool:{label}:wrap")
    elif isinstance(tool, NamespaceTool):
        for j, child in enumerate(tool.tools):
            if isinstance(child, (FunctionTool, CustomTool)):
                _plan_one(child, rules, plan, f"{param}.tools[{j}]", namespace=tool.name)
            else:
                plan.degradations.append(f"tool:{tool.name}.{tool_kind(child)[1]}:drop")
        plan.degradations.append(f"tool:{label}:expand")


def _flat(namespace: str | None, name: str) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


def _add(plan: ToolPlan, spec: ToolSpec, route: ToolRoute) -> None:
    if spec.name in plan.routes:
        plan.degradations.append(f"tool:{spec.name}:duplicate")
        plan.specs = [s for s in plan.specs if s.name != spec.name]
    plan.specs.append(spec)
    plan.routes[spec.name] = route


def _wrapped_spec(tool: CustomTool, namespace: str | None) -> ToolSpec:
    lines = [tool.description or f"The {tool.name} tool."]
    lines.append(
        f"Call it with a single string argument `{WRAPPED_ARGUMENT}` holding the raw text the tool expects "
        "(not JSON-encoded content)."
    )
    fmt = tool.format or {}
    if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        syntax = fmt.get("syntax", "lark")
        lines.append(f"The `{WRAPPED_ARGUMENT}` text must follow this {syntax} grammar:\n{fmt['definition']}")
    return ToolSpec(
        name=_flat(namespace, tool.name),
        description="\n\n".join(lines),
        parameters={
            "type": "object",
            "properties": {WRAPPED_ARGUMENT: {"type": "string", "description": "The raw input text."}},
            "required": [WRAPPED_ARGUMENT],
            "additionalProperties": False,
        },
    )


def resolve_tool_choice(choice: ToolChoice, plan: ToolPlan) -> ToolChoice:
    """`tool_choice` in terms of what the model sees; may narrow `plan.specs` (allowed_tools)."""
    if isinstance(choice, str):
        return choice
    kind = choice.get("type")
    if kind in ("function", "custom"):
        name = choice.get("name")
        flat = next((v for v, r in plan.routes.items() if r.name == name and r.custom == (kind == "custom")), None)
        if flat is None:
            raise InvalidRequest(
                f"tool_choice names the {kind} tool '{name}', which is not available to this model.",
                param="tool_choice",
            )
        return {"name": flat}
    if kind == "allowed_tools":
        listed = choice.get("tools")
        if listed is None:
            listed = []
        if not isinstance(listed, list):
            raise InvalidRequest("Invalid value for 'tool_choice.tools': expected an array.", param="tool_choice.tools")
        # (type, name) of each entry; a non-string type or name can match no tool (and may not be hashable)
        allowed = {
            tuple(v if isinstance(v, str) else None for v in (t.get("type"), t.get("name")))
            for t in listed
            if isinstance(t, dict)
        }
        keep = {v for v, r in plan.routes.items() if ("custom" if r.custom else "function", r.name) in allowed}
        plan.specs = [s for s in plan.specs if s.name in keep]
        mode = choice.get("mode", "auto")
        return mode if mode in ("auto", "required") else "auto"
    return "auto"  # hosted-tool choices: the tool is not here, let the model decide
