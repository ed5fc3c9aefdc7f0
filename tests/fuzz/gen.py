"""`Gen`, the draw helper every request body is built with: per mode (clean, single fault, chaos) it decides which
fields are absent, plausible or hostile."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.values import CLEAN, DIRTY, HOSTILE, KEYS, SURROGATE, Vocab

ABSENT = object()


ROLL = st.integers(0, 99)
EXTRA_KEYS = st.sampled_from(KEYS) | st.text(max_size=6)
_STRATEGIES: dict[tuple[int, str], st.SearchStrategy[Any]] = {}


MODES = st.sampled_from(["clean"] * 10 + ["single"] * 7 + ["chaos"] * 3)
TARGETS = st.integers(1, 12)


@dataclass
class Gen:
    """Draw helper for one request body, in one of three modes:

    * `clean`: every field plausible (odd unicode, control characters and NUL included: valid JSON);
    * `single`: the same, except exactly one spot (the `target`-th decision in the `fault` section) gets a
      hostile value, a null, or loses a required field, so the request gets past everything else and reaches
      deep code with one fault;
    * `chaos`: hostile values anywhere (6% of the decisions), from a vocabulary with lone surrogates, numbers
      beyond every range and strings past the body limit.
    """

    draw: Callable[[st.SearchStrategy[Any]], Any]
    mode: str
    surrogates: bool = False
    fault: str = ""
    target: int = 0
    section: str = ""
    decisions: int = 0

    @classmethod
    def start(cls, draw: Callable[[st.SearchStrategy[Any]], Any], sections: st.SearchStrategy[str]) -> Gen:
        g = cls(draw, draw(MODES))
        g.surrogates = g.dirty and g.chance(25)
        if g.mode == "single":
            g.fault, g.target = draw(sections), draw(TARGETS)
        return g

    @contextlib.contextmanager
    def within(self, section: str) -> Iterator[None]:
        outer, self.section = self.section, section
        try:
            yield
        finally:
            self.section = outer

    @property
    def dirty(self) -> bool:
        return self.mode == "chaos"

    @property
    def v(self) -> Vocab:
        return (SURROGATE if self.surrogates else DIRTY) if self.dirty else CLEAN

    def corrupt(self, percent: int = 6) -> bool:
        """Whether this decision goes hostile."""
        if self.mode == "single":
            if self.section != self.fault:
                return False
            self.decisions += 1
            return self.decisions == self.target
        return self.dirty and self.chance(percent)

    def s(self, name: str, build: Callable[[Vocab], st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
        """The strategy `build(vocabulary)`, built once per vocabulary (building and validating strategies
        per draw would cost more than the requests)."""
        key = (id(self.v), name)
        strategy = _STRATEGIES.get(key)
        if strategy is None:
            strategy = _STRATEGIES[key] = build(self.v)
        return strategy

    def pick(self, name: str, build: Callable[[Vocab], st.SearchStrategy[Any]]) -> Any:
        return self.draw(self.s(name, build))

    def chance(self, percent: int) -> bool:
        """True `percent`% of the time; Hypothesis's simplest draw (0) means False."""
        return bool(self.draw(ROLL) >= 100 - percent)

    def value(self, strategy: Any, *, optional: bool = True, absent: int = 40) -> Any:
        """A field's value: ABSENT (if `optional`), hostile (see `corrupt`), or drawn from `strategy` (a
        strategy, a function drawing it, or a constant)."""
        if self.corrupt():
            roll = self.draw(ROLL)
            return None if roll >= 80 else ABSENT if roll >= 70 and not optional else self.draw(HOSTILE)
        if optional and self.chance(absent):
            return ABSENT
        if isinstance(strategy, st.SearchStrategy):
            return self.draw(strategy)
        return strategy() if callable(strategy) else strategy

    def obj(self, fixed: dict[str, Any], fields: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
        out = dict(fixed)
        for name, strategy in fields.items():
            value = self.value(strategy, optional=name not in required)
            if value is not ABSENT:
                out[name] = value
        if self.corrupt(3):
            out[self.draw(EXTRA_KEYS)] = self.draw(HOSTILE)
        return out

    def items_of(self, make: Callable[[], Any], max_size: int) -> list[Any]:
        return [make() for _ in range(self.draw(SIZES[max_size]))]


SIZES = [st.integers(0, n) for n in range(8)]
BOOLS = st.booleans()
OPT_BOOLS = st.booleans() | st.none()
