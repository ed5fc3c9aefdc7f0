"""The engine thread: the only thread of a worker that touches MLX (load, render, generate).

MLX streams and lazy graphs belong to the thread that made them, so one thread owns
them all. Jobs and cancels arrive from the reader thread through a lock-protected
inbox, which the engine drains between steps: a new request joins the batch at the
next step, a cancel removes its sequence before the next token is decoded. What to
decode next is the scheduler's business (`scheduler.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from gateway.adapters.mlx.constrain import ConstraintError
from gateway.adapters.mlx.model import LoadedModel, RenderError
from gateway.adapters.mlx.scheduler import Scheduler
from gateway.adapters.mlx.slot import Job, TooLong
from gateway.adapters.mlx.source import LoadError, resolve_source
from gateway.adapters.mlx.wire import Done, Failed, Load, LoadFailed, LoadStatus, Ready, Rendered, WireMessage

__all__ = ["Engine", "Job"]

log = logging.getLogger("gateway.mlx.engine")

PACE_FACTOR = 3.0  # paced: after a step, wait this many times its duration (the model runs ~1/4 of the time)...
PACE_MAX = 0.1  # ...but never longer than this, seconds


class Engine:
    def __init__(self, send: Callable[[WireMessage], None], load: Load) -> None:
        self._send = send
        self._load = load
        self._jobs: deque[Job] = deque()
        self._cancels: list[str] = []
        self._known: dict[str, Job] = {}  # every request not yet done, by id
        self._wake = threading.Condition()
        self._stopping = False
        self._paced = False
        self.model: LoadedModel | None = None

    # ------------------------------------------------------------ reader thread

    def submit(self, job: Job) -> None:
        with self._wake:
            self._jobs.append(job)
            if not job.render_only:
                self._known[job.request.request_id] = job
            self._wake.notify()

    def cancel(self, request_id: str) -> None:
        with self._wake:
            job = self._known.get(request_id)
            if job is None:
                return  # already done
            job.generated_at_cancel = job.generated
            job.cancelled.set()
            self._cancels.append(request_id)
            self._wake.notify()

    def pace(self, on: bool) -> None:
        with self._wake:
            self._paced = on
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()

    # ------------------------------------------------------------ engine thread

    def run(self) -> None:
        spec = self._load.spec
        try:
            # Resolved and checked against allowed_paths now, and loaded from exactly that directory.
            path = resolve_source(spec, Path(self._load.cache_dir), self._status, self._load.allowed_paths)
            self._status("loading", 0, 0)
            self.model = LoadedModel(spec, path)
        except LoadError as exc:
            self._send(LoadFailed(reason=str(exc)))
            return
        except Exception as exc:
            log.exception("load crashed")
            self._send(LoadFailed(reason=f"{type(exc).__name__}: {exc}"))
            return
        self._send(Ready(info=self.model.info()))
        scheduler = Scheduler(self.model, spec, self._forget_and_send)
        while True:
            with self._wake:
                while not self._jobs and not self._cancels and scheduler.idle and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                jobs, self._jobs = self._jobs, deque()
                cancels, self._cancels = self._cancels, []
            for job in jobs:
                self._accept(job, scheduler)
            try:
                for request_id in cancels:
                    scheduler.cancel(request_id)
            except Exception as exc:
                log.exception("cancel failed")
                scheduler.fail_all("model_error", f"generation failed: {type(exc).__name__}: {exc}")
            started = time.perf_counter()
            scheduler.step()
            self._pause(scheduler, time.perf_counter() - started)

    def _pause(self, scheduler: Scheduler, step_seconds: float) -> None:
        """Paced (another model waits for a first token): leave it the cores for a while. A new job, a cancel or
        the end of pacing ends the pause at once."""
        with self._wake:
            if self._paced and not scheduler.idle and not self._jobs and not self._cancels and not self._stopping:
                self._wake.wait(min(step_seconds * PACE_FACTOR, PACE_MAX))

    def _forget_and_send(self, message: WireMessage) -> None:
        if isinstance(message, Done):
            with self._wake:
                self._known.pop(message.request_id, None)
        self._send(message)

    def _status(self, stage: str, done: int, total: int) -> None:
        self._send(LoadStatus(stage=stage, done=done, total=total))

    def _accept(self, job: Job, scheduler: Scheduler) -> None:
        request_id = job.request.request_id
        assert self.model is not None
        try:
            if job.render_only:
                text, tokens = self.model.render(job.request)
                self._send(Rendered(request_id=request_id, text=text, tokens=tokens))
                return
            scheduler.add(job)
        except (RenderError, ConstraintError) as exc:
            self._fail(request_id, "invalid_request", str(exc))
        except TooLong as exc:
            self._fail(request_id, "context_length_exceeded", str(exc))
        except Exception as exc:
            log.exception("request setup failed")
            self._fail(request_id, "model_error", f"generation failed: {type(exc).__name__}: {exc}")

    def _fail(self, request_id: str, code: str, message: str) -> None:
        self._send(Failed(request_id=request_id, code=code, message=message))
        self._forget_and_send(Done(request_id=request_id, outcome="failed"))
