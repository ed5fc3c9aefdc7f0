"""Policies: pure functions from (request, model capabilities, rules) to what the model gets."""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from gateway.adapters.base import Capabilities
from gateway.policies.calls import CallMapper
from gateway.policies.items import ItemRules, apply_item_rules
from gateway.policies.select import Rules, select_rules
from gateway.policies.tools import ToolPlan, ToolRules, plan_tools, resolve_tool_choice
from gateway.protocol import InputItem, ResponsesRequest

__all__ = ["CallMapper", "ItemRules", "Plan", "Rules", "ToolPlan", "ToolRules", "apply_policies", "select_rules"]


class Plan(Struct, kw_only=True):
    """The request to run, plus what is needed to map the model's answer back."""

    tools: ToolPlan
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    items: list[InputItem]
    notes: list[str]
    degradations: list[str]


def unavailable_note(names: list[str]) -> str:
    listed = ", ".join(names)
    return (
        f"Note: these tools were offered but are not available here, so do not try to call them: {listed}."
    )


def apply_policies(
    request: ResponsesRequest,
    items: list[InputItem],
    rules: Rules,
    capabilities: Capabilities,
    *,
    history_length: int = 0,
) -> Plan:
    """`items` is the whole conversation (stored history first, then this request's input)."""
    tool_rules = rules.tools
    if not capabilities.tool_calling:
        tool_rules = ToolRules(function="note", custom="note", namespace="note", local_shell="note")
    tools = plan_tools(request.tools, tool_rules)
    choice = request.tool_choice
    if choice == "none":
        tools.specs = []  # routes stay: history calls keep their names
    else:
        choice = resolve_tool_choice(choice, tools)
    kept, item_degradations = apply_item_rules(
        items, rules.items, vision=capabilities.vision, first_index=-history_length
    )
    notes = [unavailable_note(tools.unavailable)] if tools.unavailable else []
    return Plan(
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=request.parallel_tool_calls,
        items=kept,
        notes=notes,
        degradations=[*tools.degradations, *item_degradations],
    )
