"""The outbox joins a response's deltas so that its frames are at least `stream_interval_ms` apart: the first token
goes at once, later ones wait for the interval, a Done or Failed never overtakes held text, and 0 sends every token."""

from __future__ import annotations

from gateway.adapters.base import Delta, TextDelta, ToolCallArguments, ToolCallStart
from gateway.adapters.mlx.outbox import Outbox
from gateway.adapters.mlx.wire import Deltas, Done, Failed, WireMessage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outbox(interval: float) -> tuple[Outbox, list[WireMessage], Clock]:
    sent: list[WireMessage] = []
    clock = Clock()
    return Outbox(sent.append, interval, clock), sent, clock


def texts(sent: list[WireMessage]) -> list[list[Delta]]:
    return [message.deltas for message in sent if isinstance(message, Deltas)]


def test_the_first_token_goes_at_once_and_the_next_wait_for_the_interval() -> None:
    box, sent, clock = outbox(0.05)
    box.deltas("a", [TextDelta(text="Hel")])
    assert texts(sent) == [[TextDelta(text="Hel")]]
    for piece in ("lo", ",", " wor"):
        clock.now += 0.01
        box.deltas("a", [TextDelta(text=piece)])
        box.flush_due()
    assert len(texts(sent)) == 1  # 30 ms after the first frame: still held
    clock.now += 0.045  # 50 ms since the oldest held piece
    box.flush_due()
    assert texts(sent)[1] == [TextDelta(text="lo, wor")]


def test_a_token_after_a_long_pause_is_not_held() -> None:
    box, sent, clock = outbox(0.05)
    box.deltas("a", [TextDelta(text="one")])
    clock.now += 0.2  # a slow step
    box.deltas("a", [TextDelta(text=" two")])
    assert texts(sent) == [[TextDelta(text="one")], [TextDelta(text=" two")]]


def test_held_text_goes_before_done_and_failed() -> None:
    box, sent, clock = outbox(0.05)
    box.deltas("a", [TextDelta(text="x")])
    box.deltas("b", [TextDelta(text="y")])
    clock.now += 0.001
    box.deltas("a", [TextDelta(text="held a")])
    box.deltas("b", [TextDelta(text="held b")])
    box.send(Done(request_id="a", outcome="finished"))
    box.send(Failed(request_id="b", code="model_error", message="boom"))
    kinds = [(type(m).__name__, getattr(m, "request_id", None)) for m in sent]
    assert kinds == [("Deltas", "a"), ("Deltas", "b"), ("Deltas", "a"), ("Done", "a"), ("Deltas", "b"),
                     ("Failed", "b")]
    assert sent[2] == Deltas(request_id="a", deltas=[TextDelta(text="held a")])


def test_joined_pieces_keep_their_kinds_in_order() -> None:
    box, sent, clock = outbox(0.05)
    box.deltas("a", [TextDelta(text="go")])
    clock.now += 0.001
    box.deltas("a", [TextDelta(text=" now")])
    box.deltas("a", [ToolCallStart(call_id="c1", name="read")])
    box.deltas("a", [ToolCallArguments(text='{"pa')])
    box.deltas("a", [ToolCallArguments(text='th": 1}')])
    clock.now += 0.06
    box.flush_due()
    assert texts(sent)[1] == [TextDelta(text=" now"), ToolCallStart(call_id="c1", name="read"),
                              ToolCallArguments(text='{"path": 1}')]


def test_zero_sends_every_token_as_it_comes() -> None:
    box, sent, _ = outbox(0.0)
    for piece in ("a", "b", "c"):
        box.deltas("a", [TextDelta(text=piece)])
        box.busy(8)
    assert texts(sent) == [[TextDelta(text="a")], [TextDelta(text="b")], [TextDelta(text="c")]]


def test_a_full_batch_holds_at_least_its_per_sequence_window() -> None:
    box, sent, clock = outbox(0.01)
    box.busy(8)  # 8 × 3 ms = 24 ms, more than the 10 ms interval
    box.deltas("a", [TextDelta(text="a")])
    clock.now += 0.001
    box.deltas("a", [TextDelta(text="b")])
    clock.now += 0.015
    box.flush_due()
    assert len(texts(sent)) == 1
    clock.now += 0.01
    box.flush_due()
    assert texts(sent)[1] == [TextDelta(text="b")]
