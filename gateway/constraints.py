"""What a request constrains the answer to, checked before any model sees it (pure).

`text.format` json_schema / json_object asks for a JSON answer; `tool_choice` "required" or a named tool asks for
a tool call. Both become one `Constraint` the adapter enforces while decoding (the MLX worker masks the logits
with llguidance, see adapters/mlx/constrain.py). Schemas are compiled here once with the engine's own
validator, so a schema the engine cannot take is a 400 naming its parameter, never a failure inside a model.
An adapter that cannot enforce a constraint gets none, and the answer says so (`x-gateway-degraded`).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

import llguidance

from gateway.adapters.base import Capabilities, Constraint, InputGrammar
from gateway.errors import InvalidRequest
from gateway.grammars import GrammarError, escaped_grammar, raw_grammar, start_name
from gateway.policies.tools import ToolPlan
from gateway.protocol import CustomTool, FunctionTool, NamespaceTool, ResponsesRequest, Tool

__all__ = ["ANY_OBJECT", "EngineChecks", "grammar_problem", "plan_constraint", "schema_problem"]

ANY_OBJECT: dict[str, Any] = {"type": "object"}


class EngineChecks:
    """The engine's verdict on grammars and schemas already seen. Agents declare the same tools on every request
    (Codex's apply_patch grammar takes about 0.6 ms to check), so each is checked once per app. Keyed by a digest of
    the text, at most `size` verdicts, least recently used first out."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._verdicts: OrderedDict[bytes, str] = OrderedDict()

    def grammar(self, syntax: str, definition: str) -> str:
        return self._cached(b"grammar\0" + syntax.encode() + b"\0" + definition.encode(),
                            lambda: grammar_problem(syntax, definition))

    def schema(self, schema_json: str) -> str:
        return self._cached(b"schema\0" + schema_json.encode(), lambda: schema_problem(schema_json))

    def _cached(self, text: bytes, check: Any) -> str:
        key = hashlib.blake2b(text, digest_size=16).digest()
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = check()
            if len(self._verdicts) > self._size:
                self._verdicts.popitem(last=False)
        else:
            self._verdicts.move_to_end(key)
        return verdict


def plan_constraint(
    request: ResponsesRequest, tools: ToolPlan, tool_choice: str | dict[str, Any], parallel: bool,
    capabilities: Capabilities, mode: str = "enforce", checks: EngineChecks | None = None,
) -> tuple[Constraint | None, list[str]]:
    """(the constraint, degradations). `tools` and `tool_choice` are the policy's (visible names); `mode` is the
    model's `constraints:` setting; `checks` the app's cache of compiled verdicts."""
    checks = checks if checks is not None else EngineChecks()
    degradations: list[str] = []
    grammars = _custom_grammars(request.tools, checks)  # every declared grammar is checked, forced or not
    calls = _forced_calls(request, tools, tool_choice, checks)
    if calls:
        if capabilities.constrains_calls and mode != "off":
            inputs = _input_grammars(calls, tools, grammars, mode, degradations, checks)
            return Constraint(calls=calls, inputs=inputs, parallel=parallel,
                              max_calls=request.max_tool_calls), degradations
        degradations.append(_unenforced("tool_choice", mode))
    schema = _answer_schema(request, checks)
    if schema is None:
        guarded, more = _guarded_calls(request, tools, tool_choice, grammars, parallel, capabilities, mode, checks)
        return guarded, [*degradations, *more]
    if not capabilities.constrains_json or mode == "off":
        return None, [*degradations, _unenforced("text.format", mode)]
    return Constraint(schema=schema), degradations


def _guarded_calls(
    request: ResponsesRequest, tools: ToolPlan, tool_choice: str | dict[str, Any],
    grammars: dict[tuple[str | None, str], _Declared], parallel: bool, capabilities: Capabilities, mode: str,
    checks: EngineChecks,
) -> tuple[Constraint | None, list[str]]:
    """tool_choice "auto" with strict functions or grammar-constrained custom tools: the model may answer in text or
    call any tool, and a call it makes to one of those is held to its schema or grammar (JSON arguments for the
    others). Never a 400 (the request forces nothing); a model that cannot enforce it says so."""
    if tool_choice != "auto" or not tools.specs:
        return None, []
    strict = {t.name for t in request.tools if isinstance(t, FunctionTool) and t.strict}
    guarded: dict[str, dict[str, Any]] = {}
    for spec in tools.specs:
        route = tools.routes.get(spec.name)
        if route is None:
            continue
        if route.custom and (route.namespace, route.name) in grammars:
            guarded[spec.name] = spec.parameters
        elif not route.custom and route.namespace is None and route.name in strict:
            if not checks.schema(json.dumps(spec.parameters, sort_keys=True)):  # one it cannot take stays free
                guarded[spec.name] = spec.parameters
    if not guarded:
        return None, []
    if not capabilities.constrains_calls or mode == "off":
        return None, ["constraint:tools:ignore"]
    # Once calls are held at all, each one is held to its schema, as a forced call is (any JSON object where the
    # engine cannot take the schema).
    calls = {spec.name: guarded.get(spec.name) or _usable(spec.parameters, checks) for spec in tools.specs}
    degradations: list[str] = []
    inputs = _input_grammars(calls, tools, grammars, "enforce", degradations, checks)
    return Constraint(calls=calls, inputs=inputs, optional=True, parallel=parallel,
                      max_calls=request.max_tool_calls), degradations


def _usable(schema: dict[str, Any], checks: EngineChecks) -> dict[str, Any]:
    return ANY_OBJECT if checks.schema(json.dumps(schema, sort_keys=True)) else schema


def _unenforced(param: str, mode: str) -> str:
    if mode == "strict":
        raise InvalidRequest(f"This model cannot enforce {param} (its manifest entry sets constraints: strict).",
                             param=param)
    return f"constraint:{param}:ignore"


def _answer_schema(request: ResponsesRequest, checks: EngineChecks) -> dict[str, Any] | None:
    fmt = request.text.format if request.text is not None else {}
    kind = fmt.get("type")
    if kind == "json_object":
        return ANY_OBJECT
    if kind != "json_schema":
        return None
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest("text.format.schema must be a JSON Schema object.", param="text.format.schema")
    problem = checks.schema(json.dumps(schema, sort_keys=True))
    if problem:
        raise InvalidRequest(f"text.format.schema cannot be enforced: {problem}", param="text.format.schema")
    return schema


def _forced_calls(
    request: ResponsesRequest, tools: ToolPlan, tool_choice: str | dict[str, Any], checks: EngineChecks
) -> dict[str, dict[str, Any]]:
    """Visible tool name -> arguments schema, for the tools a forced call may go to ({} when none is forced)."""
    if tool_choice == "required":
        chosen = tools.specs
    elif isinstance(tool_choice, dict) and isinstance(tool_choice.get("name"), str):
        chosen = [s for s in tools.specs if s.name == tool_choice["name"]]
    else:
        return {}
    strict = {t.name: (i, bool(t.strict)) for i, t in enumerate(request.tools) if isinstance(t, FunctionTool)}
    calls: dict[str, dict[str, Any]] = {}
    for spec in chosen:
        schema = spec.parameters
        problem = checks.schema(json.dumps(schema, sort_keys=True))
        if problem:
            index, is_strict = strict.get(spec.name, (None, False))
            if is_strict and index is not None:
                raise InvalidRequest(f"tools[{index}].parameters cannot be enforced: {problem}",
                                     param=f"tools[{index}].parameters")
            schema = ANY_OBJECT  # not strict: valid JSON arguments are still guaranteed
        calls[spec.name] = schema
    return calls


class _Declared:
    """A custom tool's grammar as the request declared it, and where."""

    def __init__(self, param: str, syntax: str, definition: str) -> None:
        self.param, self.syntax, self.definition = param, syntax, definition


def _custom_grammars(tools: list[Tool], checks: EngineChecks, base: str = "tools", namespace: str | None = None,
                     ) -> dict[tuple[str | None, str], _Declared]:
    """(namespace, name) -> declared grammar, for every custom tool with a grammar format; a grammar the engine
    cannot compile is a 400 naming its definition."""
    found: dict[tuple[str | None, str], _Declared] = {}
    for index, tool in enumerate(tools):
        param = f"{base}[{index}]"
        if isinstance(tool, NamespaceTool):
            found.update(_custom_grammars(tool.tools, checks, f"{param}.tools", tool.name))
        if not isinstance(tool, CustomTool) or not tool.format or tool.format.get("type") != "grammar":
            continue
        syntax, definition = tool.format.get("syntax"), tool.format.get("definition")
        if syntax not in ("lark", "regex"):
            raise InvalidRequest(f"{param}.format.syntax must be one of: lark, regex.", param=f"{param}.format.syntax")
        if not isinstance(definition, str) or not definition:
            raise InvalidRequest(f"{param}.format.definition must be a non-empty string.",
                                 param=f"{param}.format.definition")
        problem = checks.grammar(syntax, definition)
        if problem:
            raise InvalidRequest(f"{param}.format.definition does not compile: {problem}",
                                 param=f"{param}.format.definition")
        found[(namespace, tool.name)] = _Declared(param, syntax, definition)
    return found


def _input_grammars(calls: dict[str, dict[str, Any]], tools: ToolPlan, grammars: dict[tuple[str | None, str], _Declared],
                    mode: str, degradations: list[str], checks: EngineChecks) -> dict[str, InputGrammar]:
    """Visible name -> the grammar its wrapped `input` string must match, for the forced custom tools."""
    inputs: dict[str, InputGrammar] = {}
    for number, name in enumerate(calls):
        route = tools.routes.get(name)
        declared = grammars.get((route.namespace, route.name)) if route is not None and route.custom else None
        if declared is None:
            continue
        prefix = f"G{number}"
        try:
            rules = escaped_grammar(declared.definition, declared.syntax, prefix)
            raw = raw_grammar(declared.definition, declared.syntax, prefix)
            problem = (checks.grammar("lark", f"start: {start_name(prefix)}\n{rules}")
                       or checks.grammar("lark", f"start: {start_name(prefix)}\n{raw}"))
        except GrammarError as exc:
            problem = str(exc)
        if problem:  # e.g. a recursive grammar: not regular, so not one lexeme
            if mode == "strict":
                raise InvalidRequest(f"{declared.param}.format cannot be enforced: {problem}",
                                     param=f"{declared.param}.format.definition")
            degradations.append(f"constraint:{declared.param}.format:ignore")
            continue
        inputs[name] = InputGrammar(start=start_name(prefix), rules=rules, raw_rules=raw)
    return inputs


def grammar_problem(syntax: str, definition: str) -> str:
    """The engine's complaint about a Lark grammar or a regex ('' if it compiles)."""
    try:
        grammar = llguidance.grammar_from(syntax, definition)  # type: ignore[arg-type]
    except ValueError as exc:
        return str(exc)
    return str(llguidance.LLMatcher.validate_grammar(grammar)).split("\n", 1)[0]


def schema_problem(schema_json: str) -> str:
    """The engine's complaint about a JSON Schema ('' if it compiles); the engine's fuel limits bound its time."""
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_json)
    except ValueError as exc:
        return str(exc)
    return str(llguidance.LLMatcher.validate_grammar(grammar)).split("\n", 1)[0]
