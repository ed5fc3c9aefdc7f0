"""The stop strings the gateway applies for a Responses upstream (gateway/adapters/upstream/stops.py)."""

from __future__ import annotations

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.adapters.upstream.stops import StopCut


def _run(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    cut = StopCut(stops)
    shown = "".join(cut.feed(piece) for piece in pieces)
    return shown + ("" if cut.hit else cut.flush()), cut.hit


def test_the_answer_ends_before_a_stop_string_split_across_pieces() -> None:
    cut = StopCut(["</answer>"])
    assert cut.feed("The result is 4</an") == "The result is 4"  # "</an" may begin the stop string: held
    assert not cut.hit
    assert cut.feed("swer> and more") == "" and cut.hit
    assert cut.feed("anything after") == ""


def test_held_text_that_turns_out_not_to_stop_is_shown() -> None:
    cut = StopCut(["\n\n"])
    assert cut.feed("line\n") == "line"
    assert cut.feed("next") == "\nnext" and not cut.hit
    assert cut.feed("end\n") == "end" and cut.flush() == "\n"


def test_the_earliest_of_several_stop_strings_wins_and_empty_ones_are_ignored() -> None:
    assert _run(["a STOP b END c"], ["END", "STOP", ""]) == ("a ", True)
    assert _run(["nothing here"], [""]) == ("nothing here", False)


@given(st.text(alphabet="abc", max_size=30), st.lists(st.integers(0, 30), max_size=6),
       st.lists(st.text(alphabet="abc", min_size=1, max_size=3), min_size=1, max_size=3))
# A stop found ("b" in "ab") while a longer one may still begin earlier ("aba" from 0): the earlier one wins, and
# at the end a held stop is still cut.
@example(text="aba", splits=[2], stops=["b", "aba"])
@example(text="ab", splits=[], stops=["b", "abc"])
def test_any_split_of_the_text_gives_what_one_piece_gives(text: str, splits: list[int], stops: list[str]) -> None:
    bounds = sorted({0, len(text), *(min(s, len(text)) for s in splits)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    first = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    expected = (text[:first], True) if first >= 0 else (text, False)
    assert _run(pieces, stops) == expected
