"""One create-response request, start to finish: decode → model → policies → history →
conversation → generation request. The result is handed to the runner (events) by the
routes; nothing here touches HTTP."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from msgspec import Struct

from gateway.adapters.base import Adapter, GenerationRequest
from gateway.assemble import Assembler
from gateway.config import GatewayConfig, ModelSpec
from gateway.constraints import EngineChecks, plan_constraint
from gateway.conversation import build_messages
from gateway.errors import GatewayError, InvalidRequest, ModelUnavailable
from gateway.ids import new_id, now
from gateway.model_lookup import resolve_model
from gateway.normalize import tool_to_wire
from gateway.policies import CallMapper, Plan, apply_policies, select_rules
from gateway.protocol import ConversationRef, InputItem, ReasoningConfig, Response, ResponsesRequest, TextConfig

__all__ = ["Prepared", "prepare_response", "response_skeleton", "settle_plan"]


class Prepared(Struct, kw_only=True):
    request: ResponsesRequest
    model: ModelSpec
    adapter: Adapter
    plan: Plan
    generation: GenerationRequest
    response: Response
    history: list[InputItem]
    ids: Callable[[str], str] = new_id

    def assembler(self) -> Assembler:
        return Assembler(self.response, new_item_id=self.ids)

    def mapper(self) -> CallMapper:
        return CallMapper(self.plan.tools, parallel_tool_calls=self.plan.parallel_tool_calls,
                          max_tool_calls=self.request.max_tool_calls)


def response_skeleton(request: ResponsesRequest, model: ModelSpec, response_id: str) -> Response:
    """The response object as `response.created` shows it: echoes, no output yet."""
    sampling = model.sampling
    return Response(
        id=response_id,
        created_at=now(),
        status="queued" if request.background else "in_progress",
        background=request.background,
        instructions=request.instructions,
        max_output_tokens=request.max_output_tokens or sampling.max_output_tokens,
        max_tool_calls=request.max_tool_calls,
        model=model.name,
        parallel_tool_calls=request.parallel_tool_calls,
        previous_response_id=request.previous_response_id,
        prompt_cache_key=request.prompt_cache_key,
        reasoning=request.reasoning or ReasoningConfig(),
        safety_identifier=request.safety_identifier,
        store=request.store,
        temperature=_first(request.temperature, sampling.temperature, 1.0),
        text=request.text or TextConfig(verbosity="medium"),
        tool_choice=request.tool_choice,
        tools=[tool_to_wire(t) for t in request.tools],
        top_logprobs=request.top_logprobs or 0,
        top_p=_first(request.top_p, sampling.top_p, 1.0),
        truncation=request.truncation or "disabled",
        user=request.user,
        metadata=request.metadata or {},
        conversation=ConversationRef(id=conversation) if (conversation := request.conversation_id()) else None,
    )


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def prepare_response(
    config: GatewayConfig,
    adapters: Mapping[str, Adapter],
    request: ResponsesRequest,
    headers: Mapping[str, str],
    *,
    history: list[InputItem] | None = None,
    stop: list[str] | None = None,
    ids: Callable[[str], str] = new_id,
    checks: EngineChecks | None = None,
) -> Prepared:
    """`request` has its item references resolved and `history` is its chain (both from `turn.open_turn`);
    `ids` makes the response and output item ids (the store puts its chain tag in them); `checks` is the app's
    cache of grammar and schema verdicts."""
    if len(request.input) > config.server.max_input_items:
        raise InvalidRequest(
            f"Too many input items: {len(request.input)} (this gateway accepts {config.server.max_input_items}).",
            param="input",
        )
    if len(request.tools) > config.server.max_tools:
        raise InvalidRequest(
            f"Too many tools: {len(request.tools)} (this gateway accepts {config.server.max_tools}).", param="tools"
        )
    model = resolve_model(config, request.model)
    adapter = adapters.get(model.name)
    if adapter is None:
        raise ModelUnavailable(f"The model '{model.name}' has no running adapter.")
    history = history or []
    rules = select_rules(config, model, headers)
    plan = apply_policies(
        request, [*history, *request.input], rules, adapter.capabilities, history_length=len(history)
    )
    messages = build_messages(
        request.instructions, plan.items, system_notes=plan.notes, namer=plan.tools.visible_name
    )
    constraint, degradations = plan_constraint(
        request, plan.tools, plan.tool_choice, plan.parallel_tool_calls, adapter.capabilities, model.constraints,
        checks,
    )
    plan.degradations += degradations
    response = response_skeleton(request, model, ids("resp"))
    max_tokens = request.max_output_tokens or model.sampling.max_output_tokens
    generation = GenerationRequest(
        request_id=response.id,
        messages=messages,
        tools=plan.tools.specs,
        tool_choice=plan.tool_choice,
        parallel_tool_calls=plan.parallel_tool_calls,
        max_tokens=min(max_tokens, model.context_length) if max_tokens else None,
        temperature=_first(request.temperature, model.sampling.temperature),
        top_p=_first(request.top_p, model.sampling.top_p),
        stop=stop or [],
        reasoning_effort=request.reasoning.effort if request.reasoning else None,
        prompt_cache_key=request.prompt_cache_key,
        chat_template_kwargs=dict(model.chat_template_kwargs),
        constraint=constraint,
    )
    return Prepared(
        request=request,
        model=model,
        adapter=adapter,
        plan=plan,
        generation=generation,
        response=response,
        history=history,
        ids=ids,
    )


async def settle_plan(prepared: Prepared, replan: Callable[[], Prepared]) -> Prepared:
    """`prepared`, or `replan()` if its plan assumed capabilities the model turns out not to have. An adapter that
    can learn them only by loading its model (`capabilities_ready`: an mlx model whose files are not here yet)
    loads it now, so its first request gets the same plan as every later one. Call it right after authorizing
    the request (an unauthorized caller must not make a model load), before anything awaits."""
    planned_with = prepared.adapter.capabilities
    try:
        settled = await prepared.adapter.capabilities_ready()
    except GatewayError:
        return prepared  # the model cannot load: the generation reports that, as a stream's response.failed
    return prepared if settled == planned_with else replan()
