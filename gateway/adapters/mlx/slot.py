"""A request admitted by the engine: its prompt, budget, sampling and decoding state.

Built in the engine thread when the request arrives (rendering happens here, so a bad
conversation fails before it takes a place in the batch).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from gateway.adapters.base import GenerationRequest
from gateway.adapters.mlx import mlxlm
from gateway.adapters.mlx.constrain import Constraints
from gateway.adapters.mlx.model import LoadedModel
from gateway.adapters.mlx.render import thinking_asked
from gateway.adapters.mlx.sequence import TokenSequence
from gateway.config import MlxTesting

__all__ = ["Job", "Samplers", "Slot", "TooLong"]


class TooLong(Exception):
    pass


class Job:
    """A request as the reader thread hands it over; `cancelled` may be set from that thread."""

    __slots__ = ("cancelled", "generated", "generated_at_cancel", "render_only", "request")

    def __init__(self, request: GenerationRequest, *, render_only: bool = False) -> None:
        self.request = request
        self.render_only = render_only
        self.cancelled = threading.Event()
        self.generated = 0
        self.generated_at_cancel = 0


class Samplers:
    """One sampler object per distinct setting: a batch whose rows share a sampler samples in one call."""

    def __init__(self) -> None:
        self._made: dict[tuple[float, float], mlxlm.Sampler] = {}

    def get(self, request: GenerationRequest) -> mlxlm.Sampler:
        temperature = 1.0 if request.temperature is None else request.temperature
        top_p = 1.0 if request.top_p is None else request.top_p
        key = (temperature, top_p)
        if key not in self._made:
            self._made[key] = mlxlm.make_sampler(temperature, top_p)
        return self._made[key]


class Slot:
    def __init__(self, job: Job, model: LoadedModel, context_length: int, samplers: Samplers,
                 testing: MlxTesting | None, constraints: Constraints | None = None) -> None:
        request = job.request
        self.job = job
        self.request_id = request.request_id
        self.key = request.prompt_cache_key
        _, self.prompt = model.render(request)
        if len(self.prompt) >= context_length:
            raise TooLong(
                f"The conversation is {len(self.prompt)} tokens; this model's context is {context_length} tokens."
            )
        room = context_length - len(self.prompt)
        self.budget = room if request.max_tokens is None else min(request.max_tokens, room)
        self.sequence = TokenSequence(request, self.prompt, model)
        self.sampler = samplers.get(request)
        self.processors = _testing_processors(model, request, len(self.prompt), testing)
        if request.constraint is not None and constraints is not None:
            thinking = model.initial_state(self.prompt) == "reasoning"
            # A request that asks for reasoning may get it even where the template does not open the think block.
            may_think = thinking_asked(request) is True
            enforce = constraints.processor(request.constraint, len(self.prompt), thinking, may_think)
            if enforce is not None:
                self.processors = [*(self.processors or []), enforce]  # last: it sees what the others left
        self.cached = 0  # prompt tokens served from the prefix cache
        self.prefilled = 0  # prompt tokens computed so far (after the cached ones)
        self.uid: int | None = None  # the batch generator's id while in the batch
        self.decoding = False
        self.arrived = time.perf_counter()
        self.admitted = 0.0
        self.logged = 0.0

    def feed(self, token: int) -> tuple[list[Any], bool]:
        """(deltas, finished) for one sampled token: finished on EOS, a stop string or the budget."""
        deltas = self.sequence.push(token)
        self.job.generated = self.sequence.generated
        return deltas, self.sequence.stopped or self.sequence.generated >= self.budget


def _testing_processors(
    model: LoadedModel, request: GenerationRequest, prompt_length: int, testing: MlxTesting | None
) -> list[mlxlm.LogitsProcessor] | None:
    if testing is None or (testing.force is None and not testing.distinct):
        return None
    from gateway.adapters.mlx.forcing import distinct_processor, forced_tokens, forcing_processor

    processors = []
    if testing.distinct:
        processors.append(distinct_processor(prompt_length))
    if testing.force == "last_user":
        eos = model.tokenizer.eos_token_id if model.tokenizer.eos_token_id is not None else min(model.eos)
        script, free = forced_tokens(model.tokenizer, request)
        processors.append(forcing_processor(script, prompt_length, eos, free))
    return processors
