"""The worker process: one model, one engine thread, frames in and out over a socket.

Started by the gateway with multiprocessing's `spawn` method (a fresh interpreter: MLX
state is never inherited through fork). The main thread reads frames and hands them
to the engine thread; anything the worker logs is forwarded to the gateway's log.
The worker exits when told to, or when the gateway's end of the socket closes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

__all__ = ["PRELOAD_VARIABLE", "THREAD_VARIABLES", "run_worker"]

# Set before MLX (and its BLAS) load, so several workers do not oversubscribe the cores.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

# Shared libraries (colon-separated paths) loaded globally before MLX, so their symbols win over the
# ones MLX bundles: on Linux, an optimised `cblas_sgemm` (Debian's OpenBLAS) instead of the wheel's
# reference BLAS. Unlike LD_PRELOAD it touches only model workers, not the gateway.
PRELOAD_VARIABLE = "MLXGW_WORKER_PRELOAD"


class Channel:
    """The worker's end of the socket; `send` is called from several threads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self.closed = False

    def send(self, message: Any) -> None:
        from gateway.adapters.mlx.wire import encode

        frame = encode(message)
        with self._lock:
            if self.closed:
                return
            try:
                self.sock.sendall(frame)
            except OSError:
                self.closed = True  # the gateway is gone; the reader sees EOF and ends the process


class _Forward(logging.Handler):
    """Worker log records → `Log` frames, so they land in the gateway's structured log."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(logging.INFO)
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        from gateway.adapters.mlx.wire import Log

        fields = dict(getattr(record, "fields", {}))
        if record.exc_info:
            fields["exception"] = self.format(record).split("\n", 1)[-1]
        try:
            self.channel.send(Log(level=record.levelname.lower(), event=record.getMessage(), fields=fields))
        except Exception:
            self.handleError(record)


def _preload(paths: str) -> str | None:
    """Load each library with RTLD_GLOBAL; the reason it failed, or None."""
    import ctypes

    for path in filter(None, paths.split(os.pathsep)):
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            return f"${PRELOAD_VARIABLE}: cannot load '{path}': {exc}"
    return None


def run_worker(sock: socket.socket, threads: int) -> None:
    """Process entry point (the spawn target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the gateway's to handle; it stops us
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from gateway.adapters.mlx.engine import Engine, Job
    from gateway.adapters.mlx.wire import Cancel, FrameError, Generate, Load, Pace, Render, Shutdown, read_frame

    channel = Channel(sock)
    root = logging.getLogger()
    root.handlers = [_Forward(channel)]
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    try:
        first = read_frame(sock)
    except (FrameError, OSError):
        os._exit(0)
    if not isinstance(first, Load):
        os._exit(2)
    problem = _preload(os.environ.get(PRELOAD_VARIABLE, ""))
    if problem is not None:
        from gateway.adapters.mlx.wire import LoadFailed

        channel.send(LoadFailed(reason=problem))
        os._exit(0)
    engine = Engine(channel.send, first)
    thread = threading.Thread(target=engine.run, name="mlx-engine", daemon=True)
    thread.start()
    while True:
        try:
            message = read_frame(sock)
        except (FrameError, OSError):
            break
        if isinstance(message, Generate):
            engine.submit(Job(message.request))
        elif isinstance(message, Render):
            engine.submit(Job(message.request, render_only=True))
        elif isinstance(message, Cancel):
            engine.cancel(message.request_id)
        elif isinstance(message, Pace):
            engine.pace(message.on)
        elif isinstance(message, Shutdown):
            break
    engine.stop()
    thread.join(timeout=5)
    sys.stderr.flush()
    # Skip interpreter teardown: MLX's threads and caches need no orderly goodbye.
    os._exit(0)
