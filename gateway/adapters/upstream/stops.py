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
        """What of `text` (after anything held) can be shown now; sets `hit` when a stop string has appeared."""
        if self.hit:
            return ""
        text = self._held + text
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held, self.hit = "", True
            return text[:cut]
        keep = max((_overlap(text, s) for s in self._stops), default=0)
        self._held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        """The held tail, once no more text can follow it (another kind of output, or the end)."""
        held, self._held = self._held, ""
        return held


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of `text` that is a proper beginning of `stop`."""
    for length in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:length]):
            return length
    return 0
