"""Messages between the gateway and a model worker, and their framing.

Every frame is a 4-byte big-endian length followed by one msgpack-encoded message
(a tagged union on `op`). Requests carry their id, so a worker holds several at once
and interleaves their deltas (continuous batching).

    gateway → worker   Load, Generate, Render, Cancel, Pace, Shutdown
    worker → gateway   LoadStatus, Ready, LoadFailed, Deltas, Failed, Done, Memory, Rendered, Log
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Literal

import msgspec

from gateway.adapters.base import Delta, GenerationRequest
from gateway.config import MlxModel

__all__ = [
    "Cancel",
    "Deltas",
    "Done",
    "Failed",
    "FrameError",
    "Generate",
    "Load",
    "LoadFailed",
    "LoadStatus",
    "Log",
    "Memory",
    "MemoryUse",
    "ModelInfo",
    "Pace",
    "Ready",
    "Render",
    "Rendered",
    "Shutdown",
    "WireMessage",
    "decode",
    "encode",
    "read_frame",
]

MAX_FRAME = 256 * 1024 * 1024  # a frame this large means a broken stream, not a message
_HEADER = struct.Struct(">I")


class _Message(msgspec.Struct, tag_field="op", kw_only=True):
    pass


# ---------------------------------------------------------------- gateway → worker


class Load(_Message, tag="load"):
    """First frame a worker receives: which model to load, where dummy models live, and the directories a local
    model must lie in (`mlx.allowed_paths`, checked by the worker on the resolved path as it loads; empty: any)."""

    spec: MlxModel
    cache_dir: str
    allowed_paths: list[str] = []


class Generate(_Message, tag="generate"):
    request: GenerationRequest


class Render(_Message, tag="render"):
    """Render a request's prompt without generating (tests and diagnostics)."""

    request: GenerationRequest


class Cancel(_Message, tag="cancel"):
    request_id: str


class Pace(_Message, tag="pace"):
    """Pause between steps (`on`) while another model waits for a first token, or run freely again."""

    on: bool


class Shutdown(_Message, tag="shutdown"):
    pass


# ---------------------------------------------------------------- worker → gateway


class LoadStatus(_Message, tag="status"):
    """Load progress (download, build, load); shown by /health."""

    stage: str
    done: int = 0
    total: int = 0


class ModelInfo(msgspec.Struct, kw_only=True):
    path: str
    tool_parser: str | None
    thinking: bool
    memory_bytes: int
    load_seconds: float
    late_system: str  # system | user | merge (render.RenderRules)
    system_role: bool
    merge_users: bool


class MemoryUse(msgspec.Struct, kw_only=True, frozen=True):
    """What a worker's model holds, in bytes. `total` is what the process keeps from MLX: its live arrays and the
    freed buffers MLX keeps for reuse (`mlx_cache`). KV caches are what is live besides the weights and the prefix
    cache (the sequences being generated, and the step's temporaries)."""

    total: int
    weights: int
    kv: int
    prefix_cache: int
    mlx_cache: int


class Memory(_Message, tag="memory"):
    """Sent while the model generates (at most every `MEMORY_EVERY` seconds) and when a request ends."""

    use: MemoryUse


class Ready(_Message, tag="ready"):
    info: ModelInfo


class LoadFailed(_Message, tag="load_failed"):
    reason: str


class Deltas(_Message, tag="deltas"):
    request_id: str
    deltas: list[Delta]


class Failed(_Message, tag="failed"):
    """A request could not be served; `code` picks the gateway error class."""

    request_id: str
    code: str
    message: str


class Done(_Message, tag="done"):
    """The worker is finished with a request, whatever the outcome (accounting only)."""

    request_id: str
    outcome: Literal["finished", "cancelled", "failed"]
    generated: int = 0
    after_cancel: int = 0  # tokens decoded between the cancel arriving and the loop stopping
    prefix_cache: dict[str, int] = {}  # the worker's prefix-cache counters (entries, bytes, hits, misses, evictions)


class Rendered(_Message, tag="rendered"):
    request_id: str
    text: str
    tokens: list[int]


class Log(_Message, tag="log"):
    level: str
    event: str
    fields: dict[str, Any] = {}


WireMessage = (
    Load | Generate | Render | Cancel | Pace | Shutdown | LoadStatus | Ready | LoadFailed | Deltas | Failed | Done | Memory
    | Rendered | Log
)

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(WireMessage)


class FrameError(Exception):
    """The peer closed the connection or sent something that is not a frame."""


def encode(message: WireMessage) -> bytes:
    body = _ENCODER.encode(message)
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> WireMessage:
    return _DECODER.decode(body)


def frame_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes exceeds the limit")
    return int(length)


HEADER_SIZE = _HEADER.size


def read_frame(sock: socket.socket) -> WireMessage:
    """Blocking read of one message (the worker side)."""
    length = frame_length(_read_exactly(sock, HEADER_SIZE))
    return decode(_read_exactly(sock, length))


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise FrameError("connection closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
