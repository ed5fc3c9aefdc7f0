"""Streaming text never stalls on bytes: invalid UTF-8 comes out at once as U+FFFD, valid characters whole."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.adapters.mlx import mlxlm
from gateway.adapters.mlx.detokenize import ByteDetokenizer
from gateway.adapters.mlx.forcing import BYTE, SPLIT
from gateway.config import parse_config
from tests.conftest import serve
from tests.sse import iter_response_events

TABLE = [b"He", b"llo", b"\xe4\xbd", b"\xa0", b"\xff", b"\x80", b"x", b" ", b" world", b"\xe4", b"\xf0\x9f", b"\x98\x80"]
HE, LLO, NI_1, NI_2, FF, CONT, X, SPACE, WORLD, LEAD3, EMOJI_1, EMOJI_2 = range(len(TABLE))


def segments(tokens: list[int], trim_space: bool = False) -> tuple[list[str], str]:
    """What a client sees after each token, and after the answer ends."""
    detokenizer = ByteDetokenizer(TABLE, trim_space)
    seen = []
    for token in tokens:
        detokenizer.add_token(token)
        seen.append(detokenizer.last_segment)
    detokenizer.finalize()
    return seen, detokenizer.last_segment


@pytest.mark.parametrize(
    ("tokens", "seen", "tail"),
    [
        # an invalid byte is a replacement character at once, not at the end of the answer
        ([HE, FF, LLO], ["He", "\ufffd", "llo"], ""),
        ([CONT, CONT, X], ["\ufffd", "\ufffd", "x"], ""),
        # a truncated three-byte sequence is known broken when ASCII follows it
        ([NI_1, X, LLO], ["", "\ufffdx", "llo"], ""),
        ([HE] + [FF] * 5, ["He"] + ["\ufffd"] * 5, ""),
        # a valid multi-byte character waits for its last byte and arrives whole
        ([HE, NI_1, NI_2, X], ["He", "", "你", "x"], ""),
        ([EMOJI_1, EMOJI_2], ["", "😀"], ""),
        ([LEAD3, NI_2], ["", ""], "\ufffd"),  # still incomplete at the end: one replacement, from finalize
        ([HE, LEAD3], ["He", ""], "\ufffd"),
    ],
)
def test_bytes_become_text_as_soon_as_they_are_certain(tokens: list[int], seen: list[str], tail: str) -> None:
    assert segments(tokens) == (seen, tail)


def test_the_space_before_the_first_word_is_trimmed_once() -> None:
    assert segments([WORLD, WORLD], trim_space=True) == (["world", " world"], "")
    assert segments([SPACE, WORLD], trim_space=True) == (["", " world"], "")  # a lone first space waits
    assert segments([SPACE], trim_space=True) == ([""], "")
    assert segments([FF, WORLD], trim_space=True) == (["\ufffd", " world"], "")
    assert segments([WORLD], trim_space=False) == ([" world"], "")


@pytest.fixture(scope="module")
def tokenizer(mlx_cache: Path) -> Any:
    from mlx_lm.tokenizer_utils import load

    (model,) = [p for p in mlx_cache.rglob("tokenizer.json")]
    return load(model.parent)


def test_the_dummy_tokenizer_gets_the_byte_detokenizer(tokenizer: Any) -> None:
    found = mlxlm.token_bytes(tokenizer)
    assert found is not None
    table, trim = found
    assert len(table) == len(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer._tokenizer)))))
    assert trim is True


def test_text_equals_mlx_lms_on_real_tokens(tokenizer: Any) -> None:
    """On what a tokenizer encodes from text, the stream adds up to mlx-lm's own text, and each piece of it
    comes out no later than mlx-lm lets it out."""
    found = mlxlm.token_bytes(tokenizer)
    assert found is not None
    rng = random.Random(7)
    texts = ["Hello world, this is a test.", "  two leading spaces", "naïve café – 你好 😀 done",
             "code:\n\tdef f(x):\n\t\treturn x * 2\n", *("".join(rng.choice("ab cé你\n😀.") for _ in range(40))
                                                          for _ in range(20))]
    for text in texts:
        tokens = tokenizer.encode(text, add_special_tokens=False)
        ours = ByteDetokenizer(*found)
        theirs = tokenizer.detokenizer
        ours_so_far = theirs_so_far = ""
        for token in tokens:
            ours.add_token(token)
            theirs.add_token(token)
            ours_so_far += ours.last_segment
            theirs_so_far += theirs.last_segment
            assert ours_so_far.startswith(theirs_so_far), text
        ours.finalize()
        theirs.finalize()
        assert ours_so_far + ours.last_segment == theirs_so_far + theirs.last_segment, text


def test_random_byte_tokens_never_wait_for_the_end(tokenizer: Any) -> None:
    """Tokens drawn at random (what a random-weight model emits): held text is at most one incomplete character."""
    found = mlxlm.token_bytes(tokenizer)
    assert found is not None
    table, trim = found
    rng = random.Random(11)
    for _ in range(50):
        ours = ByteDetokenizer(table, trim)
        for token in (rng.randrange(len(table)) for _ in range(60)):
            ours.add_token(token)
            assert isinstance(ours.last_segment, str)
        assert len(ours._decoder.getstate()[0]) <= 3  # never more than one character's bytes held back


def test_invalid_bytes_stream_through_the_worker_as_they_are_generated(mlx_cache: Path) -> None:
    """A real worker forced to emit ten 0xFF byte tokens between two words, one decode step every 40 ms:
    each replacement character reaches the client while the next ones are still being generated (every token its
    own event: `stream_interval_ms: 0`, so that joining events does not hide what the detokenizer holds)."""
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: forced, adapter: mlx, source: dummy, stream_interval_ms: 0, testing: {{force: last_user, step_delay_ms: 40}}}}
"""
    forced = SPLIT.join(["He", *[BYTE + "FF"] * 10, "llo"])
    with serve(parse_config(manifest)) as base, httpx.Client(base_url=base, timeout=60) as http:
        with http.stream("POST", "/v1/responses", json={"model": "forced", "input": forced, "stream": True}) as response:
            deltas = [(at, e["delta"]) for at, e in iter_response_events(response)
                      if e["type"] == "response.output_text.delta"]
    assert "".join(d for _, d in deltas) == "He" + "\ufffd" * 10 + "llo"
    replaced = [at for at, d in deltas if "\ufffd" in d]
    # Before: all ten were held back and came out with "llo" in the last event, 400 ms after the first byte.
    assert len(replaced) >= 5 and "llo" not in next(d for _, d in deltas if "\ufffd" in d)
    assert replaced[-1] - replaced[0] >= 0.2
