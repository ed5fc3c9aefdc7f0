"""The engine thread: the only thread of a worker that touches MLX (load, render, generate).

MLX streams and lazy graphs belong to the thread that made them, so one thread owns
them all. Jobs arrive from the reader thread through a queue; a cancel only sets a
flag, which the decode loop checks before every token (and the prefill between
chunks), so a cancelled request stops within one decode step.

Requests are served one at a time by `_generate`'s single-sequence loop; what a token
means for a request lives in `Sequence`. The queue, jobs and messages already allow
several requests in flight, so continuous batching (mlx-lm's BatchGenerator driving one
`Sequence` per uid) can replace that loop without changing the protocol.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.adapters.base import GenerationRequest, Progress
from gateway.adapters.mlx.model import LoadedModel, LoadError, RenderError, resolve_source
from gateway.adapters.mlx.sequence import Sequence
from gateway.adapters.mlx.wire import (
    Deltas,
    Done,
    Failed,
    Load,
    LoadFailed,
    Message,
    Ready,
    Rendered,
    Status,
)

__all__ = ["Engine", "Job"]

log = logging.getLogger("gateway.mlx.engine")

PREFILL_STEP = 512  # smaller than mlx-lm's default, for finer progress and prompter cancels


class Cancelled(Exception):
    pass


class _TooLong(Exception):
    pass


class Job:
    __slots__ = ("request", "render_only", "cancelled", "generated", "generated_at_cancel")

    def __init__(self, request: GenerationRequest, *, render_only: bool = False) -> None:
        self.request = request
        self.render_only = render_only
        self.cancelled = threading.Event()
        self.generated = 0
        self.generated_at_cancel = 0


class Engine:
    def __init__(self, send: Callable[[Message], None], load: Load) -> None:
        self._send = send
        self._load = load
        self._jobs: deque[Job] = deque()
        self._active: Job | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self.model: LoadedModel | None = None

    # ------------------------------------------------------------ reader thread

    def submit(self, job: Job) -> None:
        with self._wake:
            self._jobs.append(job)
            self._wake.notify()

    def cancel(self, request_id: str) -> None:
        with self._wake:
            queued = next((job for job in self._jobs if job.request.request_id == request_id), None)
            if queued is not None:
                self._jobs.remove(queued)
                self._send(Done(request_id=request_id, outcome="cancelled"))
                return
            active = self._active
        if active is not None and active.request.request_id == request_id:
            active.generated_at_cancel = active.generated
            active.cancelled.set()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            if self._active is not None:
                self._active.cancelled.set()
            self._wake.notify()

    # ------------------------------------------------------------ engine thread

    def run(self) -> None:
        spec = self._load.spec
        try:
            path = resolve_source(spec, Path(self._load.cache_dir), self._status)
            self._status("loading", 0, 0)
            self.model = LoadedModel(spec, path)
        except LoadError as exc:
            self._send(LoadFailed(reason=str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - report any failure as a load failure with its reason
            log.exception("load crashed")
            self._send(LoadFailed(reason=f"{type(exc).__name__}: {exc}"))
            return
        self._send(Ready(info=self.model.info()))
        while True:
            with self._wake:
                while not self._jobs and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                job = self._active = self._jobs.popleft()
            try:
                self._serve(job)
            finally:
                with self._wake:
                    self._active = None

    def _status(self, stage: str, done: int, total: int) -> None:
        self._send(Status(stage=stage, done=done, total=total))

    def _serve(self, job: Job) -> None:
        request_id = job.request.request_id
        assert self.model is not None
        try:
            if job.render_only:
                text, tokens = self.model.render(job.request)
                self._send(Rendered(request_id=request_id, text=text, tokens=tokens))
                return
            self._generate(job, self.model)
        except Cancelled:
            self._send(Done(request_id=request_id, outcome="cancelled", generated=job.generated,
                            after_cancel=job.generated - job.generated_at_cancel))
        except RenderError as exc:
            self._fail(request_id, "invalid_request", str(exc))
        except _TooLong as exc:
            self._fail(request_id, "context_length_exceeded", str(exc))
        except Exception as exc:  # noqa: BLE001 - one broken request must not take the worker down
            log.exception("generation failed")
            self._fail(request_id, "model_error", f"generation failed: {type(exc).__name__}: {exc}")

    def _fail(self, request_id: str, code: str, message: str) -> None:
        self._send(Failed(request_id=request_id, code=code, message=message))
        self._send(Done(request_id=request_id, outcome="failed"))

    def _generate(self, job: Job, model: LoadedModel) -> None:
        import mlx.core as mx
        from mlx_lm.generate import generate_step
        from mlx_lm.sample_utils import make_sampler

        request = job.request
        request_id = request.request_id
        _, prompt = model.render(request)
        limit = self._load.spec.context_length
        if len(prompt) >= limit:
            raise _TooLong(f"The conversation is {len(prompt)} tokens; this model's context is {limit} tokens.")
        budget = limit - len(prompt) if request.max_tokens is None else min(request.max_tokens, limit - len(prompt))
        sequence = Sequence(request, prompt, model)
        temperature = 1.0 if request.temperature is None else request.temperature
        sampler = make_sampler(temp=temperature, top_p=1.0 if request.top_p is None else request.top_p)
        processors, delay = self._testing_hooks(model, request, len(prompt))

        def progress(done: int, total: int) -> None:
            if job.cancelled.is_set():
                raise Cancelled
            self._send(Deltas(request_id=request_id, deltas=[Progress(done=done, total=total)]))

        steps = generate_step(
            mx.array(prompt), model.model, max_tokens=budget, sampler=sampler, logits_processors=processors,
            prompt_progress_callback=progress, prefill_step_size=PREFILL_STEP,
        )
        for token, _ in steps:
            if job.cancelled.is_set():
                raise Cancelled
            deltas = sequence.push(token)
            job.generated = sequence.generated
            if deltas:
                self._send(Deltas(request_id=request_id, deltas=deltas))
            if sequence.stopped:
                break
            if delay:
                time.sleep(delay)
        self._send(Deltas(request_id=request_id, deltas=sequence.finish()))
        self._send(Done(request_id=request_id, outcome="finished", generated=sequence.generated))

    def _testing_hooks(self, model: LoadedModel, request: GenerationRequest, prompt_length: int) -> tuple[Any, float]:
        testing = self._load.spec.testing
        if testing is None:
            return None, 0.0
        processors = None
        if testing.force == "last_user":
            from gateway.adapters.mlx.forcing import forced_tokens, forcing_processor

            eos = model.tokenizer.eos_token_id if model.tokenizer.eos_token_id is not None else min(model.eos)
            processors = [forcing_processor(forced_tokens(model.tokenizer, request), prompt_length, eos)]
        return processors, testing.step_delay_ms / 1000
