"""Stop strings the gateway applies itself, for an upstream whose API has no `stop` (the Responses API).

Answer text is passed on as it comes, except a tail that could still grow into a stop string; that is held back
until the next piece shows whether it does. At a stop string the answer ends before it, and the caller closes the
upstream connection so the upstream stops generating.
"""

from __future__ import annotations

__all__ = ["StopCut"]


class StopCut:
    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.hit = False
        self.produced = 0  # characters the upstream has produced so far (its usage comes only at its end)

    def feed(self, text: str) -> str:
        """What of `text` (after anything held) can be shown now; sets `hit` when a stop string has appeared.

        A stop string found is final unless another could still begin before it (its start seen, its end not yet):
        the answer ends at the earliest one, so until the next piece decides, the text from there is held."""
        if self.hit:
            return ""
        text = self._held + text
        cut = self._first(text)
        pending = min((len(text) - k for k in (_overlap(text, s) for s in self._stops) if k), default=len(text))
        if 0 <= cut <= pending:
            self._held, self.hit = "", True
            return text[:cut]
        keep_from = pending if cut < 0 else min(pending, cut)
        self._held = text[keep_from:]
        return text[:keep_from]

    def flush(self) -> str:
        """The held tail, once no more text can follow it (another kind of output, or the end); cut at a stop string
        it holds (one that waited for a longer one that may have begun earlier), which sets `hit`."""
        held, self._held = self._held, ""
        cut = self._first(held)
        if cut >= 0 and not self.hit:
            self.hit = True
            return held[:cut]
        return held

    def _first(self, text: str) -> int:
        return min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of `text` that is a proper beginning of `stop`."""
    for length in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:length]):
            return length
    return 0
