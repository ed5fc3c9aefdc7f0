"""The prefix cache's choices (longest prefix, cuts, budget, sessions) with stand-in cache layers: no MLX here."""

from __future__ import annotations

import pytest

from gateway.adapters.mlx.prefix import PrefixCache, common_prefix

PER_TOKEN = 100  # bytes a stand-in layer holds per token


class Layer:
    """Quacks like an mlx-lm cache layer: knows its size, can be trimmed (or not), deep-copies."""

    def __init__(self, size: int, trimmable: bool = True) -> None:
        self.size = size
        self.trimmable = trimmable

    @property
    def nbytes(self) -> int:
        return self.size * PER_TOKEN

    def is_trimmable(self) -> bool:
        return self.trimmable

    def trim(self, n: int) -> int:
        assert self.trimmable
        self.size -= n
        return n


def cache_for(tokens: list[int], trimmable: bool = True) -> list[Layer]:
    return [Layer(len(tokens), trimmable), Layer(len(tokens), trimmable)]


def keep(prefix: PrefixCache, tokens: list[int], *, prompt: int | None = None, key: str | None = None,
         trimmable: bool = True) -> list[Layer]:
    cache = cache_for(tokens, trimmable)
    prefix.store(tokens, cache, prompt_length=len(tokens) if prompt is None else prompt, key=key)
    return cache


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [([], [1], 0), ([1, 2, 3], [1, 2, 3], 3), ([1, 2, 3], [1, 2], 2), ([1, 2, 3], [1, 9, 3], 1), ([5], [6], 0),
     (list(range(1000)), [*range(700), -1, *range(701, 1000)], 700)],
)
def test_common_prefix(a: list[int], b: list[int], expected: int) -> None:
    assert common_prefix(a, b) == expected == common_prefix(b, a)


def test_the_longest_shared_prefix_wins_and_is_cut_where_the_prompts_diverge() -> None:
    prefix = PrefixCache(10**9)
    turn = list(range(1, 11))
    stored = keep(prefix, turn, prompt=8)
    keep(prefix, [1, 2, 3, 99, 98, 97])
    hit = prefix.lookup([1, 2, 3, 4, 5, 6, 50, 51])
    assert hit is not None and hit.length == 6
    assert [layer.size for layer in hit.cache] == [6, 6]  # cut to the shared part
    assert [layer.size for layer in stored] == [10, 10]  # the entry itself is untouched
    assert prefix.hits == 1 and prefix.misses == 0


def test_a_hit_leaves_at_least_one_token_to_compute() -> None:
    prefix = PrefixCache(10**9)
    keep(prefix, list(range(1, 11)))
    assert prefix.lookup(list(range(1, 11))).length == 9  # type: ignore[union-attr]
    assert prefix.lookup([1, 2, 3, 4, 5]).length == 4  # type: ignore[union-attr]
    assert prefix.lookup([7, 8]) is None and prefix.misses == 1


def test_a_cache_that_cannot_be_cut_is_reused_only_whole() -> None:
    prefix = PrefixCache(10**9)
    keep(prefix, list(range(1, 11)), trimmable=False)
    whole = prefix.lookup([*range(1, 11), 11, 12])
    assert whole is not None and whole.length == 10
    # Sharing 8 of its 10 tokens is no use: the two extra ones (say an end-of-turn marker) cannot be removed.
    assert prefix.lookup([*range(1, 9), 0, 0]) is None


def test_the_budget_evicts_least_recently_used_anonymous_entries_before_sessions() -> None:
    entry_bytes = 2 * 10 * PER_TOKEN
    prefix = PrefixCache(3 * entry_bytes)
    keep(prefix, [100 + i for i in range(10)], key="session")  # oldest, but a session's
    keep(prefix, [200 + i for i in range(10)])
    keep(prefix, [300 + i for i in range(10)])
    assert prefix.lookup([200 + i for i in range(10)] + [0]) is not None  # 200s now used more recently than 300s
    keep(prefix, [400 + i for i in range(10)])
    assert prefix.entries == 3 and prefix.nbytes == 3 * entry_bytes and prefix.evictions == 1
    assert prefix.lookup([300 + i for i in range(10)] + [0]) is None  # the least recently used anonymous one
    for survivor in (100, 200, 400):
        assert prefix.lookup([survivor + i for i in range(10)] + [0]) is not None
    keep(prefix, [500 + i for i in range(10)])
    keep(prefix, [600 + i for i in range(10)])
    assert prefix.lookup([100 + i for i in range(10)] + [0]) is not None  # sessions go last


def test_a_session_keeps_only_its_newest_entry() -> None:
    prefix = PrefixCache(10**9)
    keep(prefix, list(range(1, 11)), key="thread-1")
    keep(prefix, [1, 2, 3, 70, 71, 72, 73], key="thread-1")
    keep(prefix, list(range(1, 11)), key="thread-2")
    assert prefix.entries == 2
    hit = prefix.lookup([1, 2, 3, 70, 71, 72, 73, 74], key="thread-1")
    assert hit is not None and hit.length == 7


def test_an_entry_whose_prompt_a_newer_entry_holds_is_dropped() -> None:
    prefix = PrefixCache(10**9)
    keep(prefix, [*range(1, 9), 41, 42], prompt=8)  # turn 1: 8 prompt tokens, 2 generated
    keep(prefix, [1, 2, 3, 4, 60, 61], prompt=6)  # shares only part of turn 1's prompt: stays
    keep(prefix, [*range(1, 9), 41, 55, 56, 57, 58], prompt=12)  # turn 2 re-renders turn 1's answer differently
    assert prefix.entries == 2
    assert prefix.lookup([1, 2, 3, 4, 60, 61, 62]).length == 6  # type: ignore[union-attr]


def test_nothing_is_kept_without_a_budget_or_beyond_it() -> None:
    off = PrefixCache(0)
    keep(off, list(range(1, 11)))
    assert off.entries == 0 and off.lookup(list(range(1, 12))) is None
    small = PrefixCache(2 * 5 * PER_TOKEN)
    keep(small, list(range(1, 11)))  # twice the budget
    keep(small, [1, 2, 3])
    assert small.entries == 1 and small.nbytes == 2 * 3 * PER_TOKEN
