"""What a request constrains the answer to, checked before any model sees it (pure).

`text.format` json_schema / json_object asks for a JSON answer; `tool_choice` "required" or a named tool asks for
a tool call. Both become one `Constraint` the adapter enforces while decoding (the MLX worker masks the logits
with llguidance, see adapters/mlx/constrain.py). Schemas are compiled here once with the engine's own
validator, so a schema the engine cannot take is a 400 naming its parameter, never a failure inside a model.
An adapter that cannot enforce a constraint gets none, and the answer says so (`x-gateway-degraded`).
"""

from __future__ import annotations

import json
from typing import Any

import llguidance

from gateway.adapters.base import Capabilities, Constraint, ToolSpec
from gateway.errors import InvalidRequest
from gateway.protocol import FunctionTool, ResponsesRequest

__all__ = ["ANY_OBJECT", "plan_constraint", "schema_problem"]

ANY_OBJECT: dict[str, Any] = {"type": "object"}


def plan_constraint(
    request: ResponsesRequest, specs: list[ToolSpec], tool_choice: str | dict[str, Any], parallel: bool,
    capabilities: Capabilities, mode: str = "enforce",
) -> tuple[Constraint | None, list[str]]:
    """(the constraint, degradations). `specs` and `tool_choice` are the policy's (visible names); `mode` is the
    model's `constraints:` setting."""
    degradations: list[str] = []
    calls = _forced_calls(request, specs, tool_choice)
    if calls:
        if capabilities.constrains_calls and mode != "off":
            return Constraint(calls=calls, parallel=parallel), degradations
        degradations.append(_unenforced("tool_choice", mode))
    schema = _answer_schema(request)
    if schema is None:
        return None, degradations
    if not capabilities.constrains_json or mode == "off":
        return None, [*degradations, _unenforced("text.format", mode)]
    return Constraint(schema=schema), degradations


def _unenforced(param: str, mode: str) -> str:
    if mode == "strict":
        raise InvalidRequest(f"This model cannot enforce {param} (its manifest entry sets constraints: strict).",
                             param=param)
    return f"constraint:{param}:ignore"


def _answer_schema(request: ResponsesRequest) -> dict[str, Any] | None:
    fmt = request.text.format if request.text is not None else {}
    kind = fmt.get("type")
    if kind == "json_object":
        return ANY_OBJECT
    if kind != "json_schema":
        return None
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest("text.format.schema must be a JSON Schema object.", param="text.format.schema")
    problem = schema_problem(json.dumps(schema, sort_keys=True))
    if problem:
        raise InvalidRequest(f"text.format.schema cannot be enforced: {problem}", param="text.format.schema")
    return schema


def _forced_calls(
    request: ResponsesRequest, specs: list[ToolSpec], tool_choice: str | dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Visible tool name -> arguments schema, for the tools a forced call may go to ({} when none is forced)."""
    if tool_choice == "required":
        chosen = specs
    elif isinstance(tool_choice, dict) and isinstance(tool_choice.get("name"), str):
        chosen = [s for s in specs if s.name == tool_choice["name"]]
    else:
        return {}
    strict = {t.name: (i, bool(t.strict)) for i, t in enumerate(request.tools) if isinstance(t, FunctionTool)}
    calls: dict[str, dict[str, Any]] = {}
    for spec in chosen:
        schema = spec.parameters
        problem = schema_problem(json.dumps(schema, sort_keys=True))
        if problem:
            index, is_strict = strict.get(spec.name, (None, False))
            if is_strict and index is not None:
                raise InvalidRequest(f"tools[{index}].parameters cannot be enforced: {problem}",
                                     param=f"tools[{index}].parameters")
            schema = ANY_OBJECT  # not strict: valid JSON arguments are still guaranteed
        calls[spec.name] = schema
    return calls


def schema_problem(schema_json: str) -> str:
    """The engine's complaint about a JSON Schema ('' if it compiles); the engine's fuel limits bound its time."""
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_json)
    except ValueError as exc:
        return str(exc)
    return str(llguidance.LLMatcher.validate_grammar(grammar)).split("\n", 1)[0]
