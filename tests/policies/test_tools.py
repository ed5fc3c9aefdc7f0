"""Every action on every tool type, table-driven. Pure functions, no I/O."""

from __future__ import annotations

import json

import pytest

from gateway.errors import InvalidRequest
from gateway.normalize import decode_request
from gateway.policies.tools import ToolRoute, ToolRules, plan_tools, resolve_tool_choice

FUNCTION = {"type": "function", "name": "exec_command", "description": "run", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}
CUSTOM = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
          "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}}
NAMESPACE = {"type": "namespace", "name": "docs", "description": "MCP server",
             "tools": [{"type": "function", "name": "search", "parameters": {"type": "object"}},
                       {"type": "custom", "name": "raw"}]}
LOCAL_SHELL = {"type": "local_shell"}
WEB_SEARCH = {"type": "web_search", "external_web_access": False}
MCP = {"type": "mcp", "server_label": "deepwiki"}
UNKNOWN = {"type": "hologram", "name": "holo"}


def tools(*wire):  # type: ignore[no-untyped-def]
    return decode_request(json.dumps({"model": "m", "tools": list(wire)}).encode()).tools


@pytest.mark.parametrize(
    ("wire", "rules", "visible", "unavailable", "degradations"),
    [
        (FUNCTION, ToolRules(), ["exec_command"], [], []),
        (FUNCTION, ToolRules(function="drop"), [], [], ["tool:exec_command:drop"]),
        (FUNCTION, ToolRules(function="note"), [], ["exec_command"], ["tool:exec_command:note"]),
        (CUSTOM, ToolRules(), ["apply_patch"], [], ["tool:apply_patch:wrap"]),
        (CUSTOM, ToolRules(custom="drop"), [], [], ["tool:apply_patch:drop"]),
        (CUSTOM, ToolRules(custom="note"), [], ["apply_patch"], ["tool:apply_patch:note"]),
        (NAMESPACE, ToolRules(), ["docs__search", "docs__raw"], [], ["tool:raw:wrap", "tool:docs:expand"]),
        (NAMESPACE, ToolRules(namespace="drop"), [], [], ["tool:docs:drop"]),
        (NAMESPACE, ToolRules(namespace="note"), [], ["docs"], ["tool:docs:note"]),
        (LOCAL_SHELL, ToolRules(), [], ["local_shell"], ["tool:local_shell:note"]),
        (LOCAL_SHELL, ToolRules(local_shell="drop"), [], [], ["tool:local_shell:drop"]),
        (WEB_SEARCH, ToolRules(), [], ["web_search"], ["tool:web_search:note"]),
        (WEB_SEARCH, ToolRules(hosted="drop"), [], [], ["tool:web_search:drop"]),
        (MCP, ToolRules(), [], ["deepwiki"], ["tool:deepwiki:note"]),
        (UNKNOWN, ToolRules(), [], ["holo"], ["tool:holo:note"]),
        (UNKNOWN, ToolRules(unknown="drop"), [], [], ["tool:holo:drop"]),
        # by wire type and by name; names beat types beat kinds
        (WEB_SEARCH, ToolRules(types={"web_search": "drop"}), [], [], ["tool:web_search:drop"]),
        (CUSTOM, ToolRules(types={"custom": "note"}, names={"apply_patch": "wrap"}), ["apply_patch"], [], ["tool:apply_patch:wrap"]),
        (FUNCTION, ToolRules(names={"exec_command": "note"}), [], ["exec_command"], ["tool:exec_command:note"]),
        # a tool with no name of its own is named by its type; an MCP tool by its server_label, then its type
        (WEB_SEARCH, ToolRules(names={"web_search": "drop"}), [], [], ["tool:web_search:drop"]),
        (LOCAL_SHELL, ToolRules(names={"local_shell": "drop"}), [], [], ["tool:local_shell:drop"]),
        (MCP, ToolRules(names={"mcp": "drop"}), [], [], ["tool:deepwiki:drop"]),
        (MCP, ToolRules(names={"deepwiki": "note", "mcp": "drop"}), [], ["deepwiki"], ["tool:deepwiki:note"]),
        # a function's name is its own: `names: {function: ...}` is not a type rule
        (FUNCTION, ToolRules(names={"function": "drop"}), ["exec_command"], [], []),
        # an action that cannot apply degrades to a visible note rather than failing
        (FUNCTION, ToolRules(function="expand"), [], ["exec_command"], ["tool:exec_command:note"]),
    ],
)
def test_actions(wire, rules, visible, unavailable, degradations) -> None:  # type: ignore[no-untyped-def]
    plan = plan_tools(tools(wire), rules)
    assert [s.name for s in plan.specs] == visible
    assert plan.unavailable == unavailable
    assert plan.degradations == degradations


@pytest.mark.parametrize(
    ("wire", "rules", "param", "named"),
    [
        (FUNCTION, ToolRules(function="reject"), "tools[1]", "exec_command"),
        (CUSTOM, ToolRules(custom="reject"), "tools[1]", "apply_patch"),
        (NAMESPACE, ToolRules(namespace="reject"), "tools[1]", "docs"),
        (NAMESPACE, ToolRules(names={"search": "reject"}), "tools[1].tools[0]", "search"),
        (LOCAL_SHELL, ToolRules(local_shell="reject"), "tools[1]", "local_shell"),
        (WEB_SEARCH, ToolRules(hosted="reject"), "tools[1]", "web_search"),
        (UNKNOWN, ToolRules(unknown="reject"), "tools[1]", "holo"),
        ({"type": "image_generation"}, ToolRules(names={"image_generation": "reject"}), "tools[1]", "image_generation"),
    ],
)
def test_reject_names_the_tool_and_its_index(wire, rules, param, named) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest) as info:
        plan_tools(tools(FUNCTION if wire is not FUNCTION else WEB_SEARCH, wire), rules)
    assert info.value.param == param
    assert f"'{named}'" in info.value.message and "reject" in info.value.message
    assert info.value.code == "unsupported_tool"


def test_native_function_keeps_its_schema() -> None:
    (spec,) = plan_tools(tools(FUNCTION), ToolRules()).specs
    assert spec.description == "run"
    assert spec.parameters == FUNCTION["parameters"]


def test_wrapped_custom_tool_is_a_one_string_function_with_the_grammar() -> None:
    plan = plan_tools(tools(CUSTOM), ToolRules())
    (spec,) = plan.specs
    assert spec.parameters == {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The raw input text."}},
        "required": ["input"],
        "additionalProperties": False,
    }
    assert spec.description.startswith("Edit files.")
    assert "lark grammar:\nstart: begin_patch" in spec.description
    assert plan.routes["apply_patch"] == ToolRoute(name="apply_patch", custom=True)


def test_expanded_namespace_routes_back_to_children() -> None:
    plan = plan_tools(tools(NAMESPACE), ToolRules())
    assert plan.routes == {
        "docs__search": ToolRoute(name="search", namespace="docs"),
        "docs__raw": ToolRoute(name="raw", namespace="docs", custom=True),
    }
    assert plan.visible_name("search", "docs", False) == ("docs__search", "")
    assert plan.visible_name("raw", "docs", True) == ("docs__raw", "input")


def test_hosted_tools_inside_a_namespace_are_dropped_visibly() -> None:
    wire = {"type": "namespace", "name": "ns", "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}]}
    plan = plan_tools(tools(wire), ToolRules())
    assert [s.name for s in plan.specs] == ["ns__f"]
    assert "tool:ns.web_search:drop" in plan.degradations


def test_duplicate_visible_names_keep_the_last_and_say_so() -> None:
    plan = plan_tools(tools(FUNCTION, {**FUNCTION, "description": "second"}), ToolRules())
    assert [s.description for s in plan.specs] == ["second"]
    assert "tool:exec_command:duplicate" in plan.degradations


@pytest.mark.parametrize(
    ("choice", "expected", "visible"),
    [
        ("auto", "auto", ["exec_command", "apply_patch", "docs__search", "docs__raw"]),
        ("required", "required", ["exec_command", "apply_patch", "docs__search", "docs__raw"]),
        ({"type": "function", "name": "exec_command"}, {"name": "exec_command"}, None),
        ({"type": "custom", "name": "apply_patch"}, {"name": "apply_patch"}, None),
        ({"type": "function", "name": "search"}, {"name": "docs__search"}, None),
        ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "exec_command"}]},
         "required", ["exec_command"]),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "custom", "name": "apply_patch"},
                                                             {"type": "function", "name": "search"}]},
         "auto", ["apply_patch", "docs__search"]),
        ({"type": "web_search"}, "auto", None),
        ({"type": "mcp", "server_label": "x"}, "auto", None),
    ],
)
def test_tool_choice_after_the_policy(choice, expected, visible) -> None:  # type: ignore[no-untyped-def]
    plan = plan_tools(tools(FUNCTION, CUSTOM, NAMESPACE), ToolRules())
    before = [s.name for s in plan.specs]
    assert resolve_tool_choice(choice, plan) == expected
    assert [s.name for s in plan.specs] == (visible if visible is not None else before)


def test_tool_choice_naming_a_removed_tool_is_a_400() -> None:
    plan = plan_tools(tools(FUNCTION), ToolRules(function="drop"))
    with pytest.raises(InvalidRequest) as info:
        resolve_tool_choice({"type": "function", "name": "exec_command"}, plan)
    assert info.value.param == "tool_choice"
