"""The prefix cache: KV caches of earlier prompts, reused by prompts that start the same way.

Agents resend their whole history every turn (Codex with `store: false`, and a chain of
`previous_response_id` expands to the same), so the new prompt shares a long prefix with
the previous turn's prompt plus answer. A lookup finds the entry sharing the longest
prefix with the new prompt and hands out a cache cut to exactly that prefix: tokens an
entry holds that the new render does not reproduce (an end-of-turn marker, a think block
the template drops, an answer re-tokenized differently) are never reused. Caches that
cannot be cut (sliding-window or recurrent layers) are reused only when the whole entry
is a prefix of the new prompt.

Bounded by bytes, least recently used first; anonymous entries go before entries of a
`prompt_cache_key` session, and each session keeps only its newest entry, so many turns
of one session do not crowd out the others. Entries are never written to: a hit gets
fresh array objects (slices), so a generation extending them cannot alter the entry.

Engine thread only (MLX arrays belong to the thread that made them).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from gateway.adapters.mlx import mlxlm

__all__ = ["Hit", "PrefixCache", "common_prefix"]

log = logging.getLogger("gateway.mlx.prefix")

MAX_ENTRIES = 64  # lookups compare against every entry; this bounds their cost


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    low, high = 0, n  # a[:low] == b[:low] holds, a[:high] == b[:high] does not
    while high - low > 1:
        mid = (low + high) // 2
        if a[low:mid] == b[low:mid]:
            low = mid
        else:
            high = mid
    return low


class Hit:
    """A cache holding the first `length` tokens of a prompt, ready to be extended."""

    __slots__ = ("cache", "length")

    def __init__(self, cache: list[Any], length: int) -> None:
        self.cache = cache
        self.length = length


class _Entry:
    __slots__ = ("cache", "key", "nbytes", "prompt_length", "tokens", "used")

    def __init__(self, tokens: list[int], prompt_length: int, cache: list[Any], key: str | None, used: int) -> None:
        self.tokens = tokens
        self.prompt_length = prompt_length  # the rendered part; the rest was generated
        self.cache = cache
        self.nbytes = sum(int(layer.nbytes) for layer in cache)
        self.key = key
        self.used = used


class PrefixCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._entries: list[_Entry] = []
        self._clock = 0
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @property
    def entries(self) -> int:
        return len(self._entries)

    def lookup(self, tokens: list[int], key: str | None = None) -> Hit | None:
        """The longest cached prefix of `tokens`, leaving at least one token to prefill."""
        limit = len(tokens) - 1
        best: _Entry | None = None
        best_length = 0
        for entry in self._entries:
            length = min(common_prefix(entry.tokens, tokens), limit)
            if length < len(entry.tokens) and not _trimmable(entry.cache):
                continue  # a cache that cannot be cut is only good when all of it is a prefix
            better = length > best_length or (
                length == best_length and best is not None and key is not None and entry.key == key != best.key
            )
            if length > 0 and better:
                best, best_length = entry, length
        if best is None:
            self.misses += 1
            return None
        self._clock += 1
        best.used = self._clock
        self.hits += 1
        return Hit(_cut(best.cache, best_length, len(best.tokens)), best_length)

    def store(self, tokens: list[int], cache: list[Any], *, prompt_length: int, key: str | None = None) -> None:
        """Keep `cache` (holding exactly `tokens`) for later prompts; the cache is not used by anyone else."""
        if self.budget <= 0 or not tokens or not cache:
            return
        cache = _compact(cache)
        self._clock += 1
        entry = _Entry(list(tokens), min(prompt_length, len(tokens)), cache, key, self._clock)
        if entry.nbytes > self.budget:
            return
        trimmable = _trimmable(cache)
        for old in list(self._entries):
            same_session = key is not None and old.key == key
            # An older entry whose whole prompt the new one also holds adds nothing a cut of the new one can't give.
            covered = trimmable and common_prefix(old.tokens, entry.tokens) >= old.prompt_length
            if same_session or covered:
                self._drop(old)
        self._entries.append(entry)
        self.nbytes += entry.nbytes
        while self.nbytes > self.budget or len(self._entries) > MAX_ENTRIES:
            victim = min(self._entries, key=lambda e: (e.key is not None, e.used))
            self._drop(victim)
            self.evictions += 1

    def _drop(self, entry: _Entry) -> None:
        self._entries.remove(entry)
        self.nbytes -= entry.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def describe(self) -> dict[str, int]:
        return {
            "entries": len(self._entries), "bytes": self.nbytes, "hits": self.hits, "misses": self.misses,
            "evictions": self.evictions,
        }


def _trimmable(cache: list[Any]) -> bool:
    return all(layer.is_trimmable() for layer in cache)


def _is_plain(layer: Any) -> bool:
    """mlx-lm's growing KV cache, holding something."""
    return mlxlm.is_kv_cache(layer) and layer.keys is not None


def _cut(cache: list[Any], length: int, held: int) -> list[Any]:
    """A cache of the first `length` tokens that shares nothing mutable with `cache`."""
    if all(_is_plain(layer) for layer in cache):
        # Slices are new array objects of exactly `length`: the next write reallocates instead of
        # writing into the entry's buffers.
        return [mlxlm.kv_cache(layer.keys[..., :length, :], layer.values[..., :length, :], length) for layer in cache]
    out = copy.deepcopy(cache)
    if length < held:
        for layer in out:
            layer.trim(held - length)
    return out


def _compact(cache: list[Any]) -> list[Any]:
    """Drop the spare capacity a growing KV cache keeps, so the byte count is what is held."""
    if not all(_is_plain(layer) for layer in cache):
        return cache
    import mlx.core as mx

    out = []
    for layer in cache:
        keys, values = layer.keys, layer.values
        if keys.shape[2] > layer.offset:
            keys = mx.contiguous(keys[..., : layer.offset, :])
            values = mx.contiguous(values[..., : layer.offset, :])
        out.append(mlxlm.kv_cache(keys, values, layer.offset))
    mx.eval([(layer.keys, layer.values) for layer in out])
    return out
