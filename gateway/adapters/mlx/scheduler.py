"""Continuous batching: which requests decode, in what form, one step at a time.

Up to `max_batch` requests are active; the rest wait in arrival order. A lone request
runs in the solo decoder (fastest for one sequence); as soon as a second one is admitted
the lone one moves into mlx-lm's `BatchGenerator`, where every step decodes one token
for each active sequence and prefills a chunk of newly admitted prompts. Requests join
and leave between steps, each with its own sampler, budget and stop conditions; when
only one is left it returns to the solo decoder.

Prompts start from the longest prefix the prefix cache holds; a finished (or cancelled)
request leaves its cache there for the next turn. Prefill runs in chunks sized from the
measured prefill speed, short while others are decoding (so they keep streaming) and
longer when alone (so a cancel still lands within about a second or two).

Engine thread only.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from gateway.adapters.mlx import mlxlm
from gateway.adapters.mlx.constrain import Constraints
from gateway.adapters.mlx.model import LoadedModel
from gateway.adapters.mlx.outbox import Outbox
from gateway.adapters.mlx.prefix import PrefixCache
from gateway.adapters.mlx.slot import Job, Samplers, Slot
from gateway.adapters.mlx.solo import SoloDecoder
from gateway.adapters.mlx.wire import Done, Failed, Memory, WireMessage
from gateway.config import MlxModel

__all__ = ["Scheduler"]

log = logging.getLogger("gateway.mlx.scheduler")

CHUNK_LIMITS = (32, 2048)  # prefill tokens per sequence and step
CHUNK_SECONDS = (0.25, 1.5)  # target time of one prefill step: while others decode / alone
FIRST_RATE = 512.0  # prefill tokens/s assumed until measured
TAIL = 1.5  # a remainder up to this many chunks is prefilled at once
LOG_PREFILL = 1024  # prompts computing at least this many tokens are logged, with progress
LOG_EVERY = 5.0
MEMORY_EVERY = 0.5  # seconds between memory reports while generating (KV caches grow with every token)


class Scheduler:
    def __init__(self, model: LoadedModel, spec: MlxModel, send: Callable[[WireMessage], None]) -> None:
        self.model = model
        self.spec = spec
        self._out = Outbox(send, spec.stream_interval_ms / 1000)
        self.max_batch = spec.max_batch if model.batchable else 1
        self.prefix = PrefixCache(int(spec.prefix_cache_mb * 2**20))
        self._samplers = Samplers()
        self._constraints = Constraints(model.tokenizer, model.parser_name, model.markers.think_end,
                                        model.markers.think_start)
        self._waiting: deque[Slot] = deque()
        self._solo: tuple[Slot, SoloDecoder] | None = None
        self._batch: dict[int, Slot] = {}
        self._generator: mlxlm.Batch | None = None
        self._rate = FIRST_RATE
        self._delay = spec.testing.step_delay_ms / 1000 if spec.testing is not None else 0.0
        self._memory_sent = 0.0
        self._memory_changed = False  # a request ended (its KV freed, or kept in the prefix cache) since the last report

    @property
    def idle(self) -> bool:
        return not self._waiting and self._solo is None and not self._batch

    def active(self) -> int:
        return len(self._batch) + (self._solo is not None)

    # ------------------------------------------------------------ arrivals and cancels

    def add(self, job: Job) -> Slot:
        """Render and queue; raises RenderError / TooLong for requests that cannot be served."""
        slot = Slot(job, self.model, self.spec.context_length, self._samplers, self.spec.testing, self._constraints)
        self._waiting.append(slot)
        return slot

    def cancel(self, request_id: str) -> bool:
        """Stop a request wherever it is; False if it is not here (already finished)."""
        for slot in self._waiting:
            if slot.request_id == request_id:
                self._waiting.remove(slot)
                self._done(slot, "cancelled")
                return True
        if self._solo is not None and self._solo[0].request_id == request_id:
            slot, solo = self._solo
            self._solo = None
            cache, tokens = solo.settled_cache()
            self._keep(slot, cache, tokens)
            self._done(slot, "cancelled")
            return True
        for uid, slot in self._batch.items():
            if slot.request_id == request_id:
                del self._batch[uid]
                assert self._generator is not None
                self._keep(slot, *self._generator.remove(uid))
                self._done(slot, "cancelled")
                return True
        return False

    def fail_all(self, code: str, message: str) -> None:
        for slot in [*self._waiting, *self._batch.values(), *([self._solo[0]] if self._solo else [])]:
            self._out.send(Failed(request_id=slot.request_id, code=code, message=message))
            self._done(slot, "failed")
        self._waiting.clear()
        self._batch.clear()
        self._solo = None
        self._generator = None

    # ------------------------------------------------------------ one step

    def step(self) -> None:
        try:
            self._admit()
            if self._solo is not None:
                self._step_solo()
            elif self._batch:
                self._step_batch()
            self._maybe_go_solo()
        except Exception as exc:
            log.exception("generation step failed")
            self.fail_all("model_error", f"generation failed: {type(exc).__name__}: {exc}")
            return
        self._out.busy(self.active())
        self._out.flush_due()
        self._report_memory()
        if self._delay and not self.idle:
            time.sleep(self._delay)

    def _admit(self) -> None:
        while self._waiting and self.active() < self.max_batch:
            slot = self._waiting[0]  # stays queued (so a failure here fails it too) until it has a place
            slot.admitted = time.perf_counter()
            hit = self.prefix.lookup(slot.prompt, slot.key) if self.prefix.budget > 0 else None
            slot.cached = hit.length if hit is not None else 0
            cache = hit.cache if hit is not None else None
            rest = slot.prompt[slot.cached:]
            if self.active() == 0:
                if cache is None:
                    cache = mlxlm.make_prompt_cache(self.model.model)
                solo = SoloDecoder(self.model.model, cache, slot.prompt[: slot.cached], rest, slot.sampler,
                                   slot.processors)
                self._waiting.popleft()
                self._solo = (slot, solo)
                continue
            if self._solo is not None:
                self._solo_to_batch()
            self._insert(slot, cache, slot.prompt[: slot.cached], rest, slot.budget)
            self._waiting.popleft()

    def _step_solo(self) -> None:
        assert self._solo is not None
        slot, solo = self._solo
        if solo.prefilling:
            began = time.perf_counter()
            fed = solo.prefill(self._chunk(1, decoding=False, remaining=len(solo.rest) - 1))
            self._measured(fed, time.perf_counter() - began)
            self._progress(slot, slot.prefilled + fed)
            return
        token = solo.step()
        self._first_token(slot)
        if self._emit(slot, token):
            self._solo = None
            self._finish(slot, *solo.settled_cache())

    def _step_batch(self) -> None:
        generator = self._batch_generator()
        waiting = [len(slot.prompt) - slot.cached - slot.prefilled for slot in self._batch.values() if not slot.decoding]
        generator.set_prefill_step(self._chunk(len(waiting), decoding=len(waiting) < len(self._batch),
                                               remaining=max(waiting, default=0)))
        began = time.perf_counter()
        prompt_responses, generation_responses = generator.step()
        elapsed = time.perf_counter() - began
        fed = 0
        for response in prompt_responses:
            slot = self._batch.get(response.uid)
            if slot is not None and not response.end_of_prompt:
                fed += response.progress[0] - slot.prefilled
                self._progress(slot, response.progress[0])
        if fed:
            self._measured(fed, elapsed)
        for generated in generation_responses:
            slot = self._batch.get(generated.uid)
            if slot is None:
                continue
            self._first_token(slot)
            finished = self._emit(slot, generated.token)
            if generated.finish_reason is not None:
                del self._batch[generated.uid]
                self._finish(slot, generated.prompt_cache, generated.all_tokens)
            elif finished:  # a stop string, which the generator does not know about
                del self._batch[generated.uid]
                self._finish(slot, *generator.remove(generated.uid))

    # ------------------------------------------------------------ moving between solo and batch

    def _batch_generator(self) -> mlxlm.Batch:
        if self._generator is None:
            self._generator = mlxlm.Batch(self.model.model, max_batch=self.max_batch,
                                          prefill_step_size=CHUNK_LIMITS[1], eos=self.model.eos)
        return self._generator

    def _insert(self, slot: Slot, cache: mlxlm.Cache | None, held: list[int], rest: list[int], budget: int) -> None:
        uid = self._batch_generator().insert(rest, budget=budget, cache=cache, held=held, sampler=slot.sampler,
                                             processors=slot.processors or [])
        slot.uid = uid
        self._batch[uid] = slot

    def _solo_to_batch(self) -> None:
        assert self._solo is not None
        slot, solo = self._solo
        self._solo = None
        sampled = solo.holds_sample
        cache, held, rest = solo.detach()
        # `rest` is the token sampled but not yet emitted: emit it first. A decoder back from the batch that has not
        # stepped yet holds the batch's last token to feed again, already emitted: emitting it would repeat it.
        if sampled:
            if self._emit(slot, rest[0]):
                self._finish(slot, cache, held)
                return
        self._insert(slot, cache, held, rest, slot.budget - slot.sequence.generated)

    def _maybe_go_solo(self) -> None:
        if len(self._batch) != 1 or self._waiting or self._solo is not None or not self.model.trimmable:
            return
        ((uid, slot),) = self._batch.items()
        if not slot.decoding:
            return
        cache, tokens = self._batch_generator().remove(uid)
        assert cache is not None
        self._batch.clear()
        # The batch's sample after the last token is dropped with it: feed that token again.
        mlxlm.trim_prompt_cache(cache, 1)
        solo = SoloDecoder(self.model.model, cache, list(tokens[:-1]), [tokens[-1]], slot.sampler, slot.processors)
        self._solo = (slot, solo)

    # ------------------------------------------------------------ bookkeeping

    def _chunk(self, prefilling: int, *, decoding: bool, remaining: int) -> int:
        seconds = CHUNK_SECONDS[0] if decoding else CHUNK_SECONDS[1]
        tokens = int(min(CHUNK_LIMITS[1], max(CHUNK_LIMITS[0], self._rate * seconds / max(1, prefilling))))
        # A prompt only a little longer than one chunk goes in one: a short tail costs a whole extra forward pass.
        return remaining if 0 < remaining <= tokens * TAIL else tokens

    def _measured(self, tokens: int, seconds: float) -> None:
        if tokens > 0 and seconds > 0:
            self._rate = 0.6 * self._rate + 0.4 * (tokens / seconds)

    def _progress(self, slot: Slot, prefilled: int) -> None:
        """A chunk of the prompt was computed; long prompts log how far they are (the stream itself stays
        alive through the gateway's keepalive events, which need nothing from here)."""
        slot.prefilled = prefilled
        total = len(slot.prompt)
        done = slot.cached + prefilled
        now = time.perf_counter()
        if total - slot.cached >= LOG_PREFILL and now - (slot.logged or slot.admitted) >= LOG_EVERY:
            slot.logged = now
            log.info("prefill progress", extra={"fields": {
                "request_id": slot.request_id, "done": done, "total": total, "cached": slot.cached}})

    def _emit(self, slot: Slot, token: int) -> bool:
        """Send what one sampled token adds to the answer; True when it ends the answer."""
        deltas, finished = slot.feed(token)
        if deltas and not finished:
            self._out.deltas(slot.request_id, [*deltas, slot.sequence.tally(slot.cached)])
        elif deltas:
            self._out.deltas(slot.request_id, deltas)
        return finished

    def _first_token(self, slot: Slot) -> None:
        if slot.decoding:
            return
        slot.decoding = True
        computed = len(slot.prompt) - slot.cached
        if computed >= LOG_PREFILL:
            seconds = time.perf_counter() - slot.admitted
            log.info("prefill done", extra={"fields": {
                "request_id": slot.request_id, "prompt_tokens": len(slot.prompt), "cached": slot.cached,
                "seconds": round(seconds, 3), "tokens_per_second": round(computed / seconds, 1) if seconds else None,
                "waited": round(slot.admitted - slot.arrived, 3)}})

    def _finish(self, slot: Slot, cache: mlxlm.Cache | None, tokens: list[int] | None) -> None:
        self._out.deltas(slot.request_id, slot.sequence.finish(cached=slot.cached))
        self._keep(slot, cache, tokens)  # first, so that the Done's prefix-cache counters include this request
        self._done(slot, "finished")

    def _keep(self, slot: Slot, cache: mlxlm.Cache | None, tokens: list[int] | None) -> None:
        if cache is not None and tokens is not None and len(tokens) > slot.cached:
            self.prefix.store(tokens, cache, prompt_length=len(slot.prompt), key=slot.key)

    def _report_memory(self) -> None:
        now = time.perf_counter()
        if self._memory_changed or (not self.idle and now - self._memory_sent >= MEMORY_EVERY):
            self._memory_sent, self._memory_changed = now, False
            self._out.send(Memory(use=self.model.memory_use(self.prefix.nbytes)))

    def _done(self, slot: Slot, outcome: Literal["finished", "cancelled", "failed"]) -> None:
        self._memory_changed = True
        job = slot.job
        after = job.generated - job.generated_at_cancel if outcome == "cancelled" else 0
        self._out.send(Done(request_id=slot.request_id, outcome=outcome,
                            generated=job.generated, after_cancel=after, prefix_cache=self.prefix.describe()))
