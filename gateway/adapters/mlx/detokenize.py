"""Sampled tokens → text as soon as it is certain, for tokenizers whose tokens are byte strings.

mlx-lm's streaming detokenizers hold text back while it ends in an incomplete character,
and they take any trailing U+FFFD for one: a run of byte tokens that can never form valid
UTF-8 (a lone continuation byte, 0xFF, a truncated sequence followed by ASCII) is held to
the end of the answer, and a client sees nothing for seconds. Here an incremental UTF-8
decoder tells the two apart: a complete character goes out at once, an invalid byte goes
out at once as U+FFFD, and only the bytes of a character still being completed wait
(so a valid multi-byte character is never split across deltas).

Byte tables come from `mlxlm.token_bytes` (byte-level BPE and SentencePiece tokenizers);
for any other tokenizer the worker keeps mlx-lm's own detokenizer.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

__all__ = ["ByteDetokenizer"]


class ByteDetokenizer:
    """The `Detokenizer` protocol (`add_token`, `last_segment`, `finalize`) over a token → bytes table."""

    def __init__(self, table: Sequence[bytes], trim_space: bool) -> None:
        self._table = table
        self._trim = trim_space  # drop the one space a tokenizer puts before the first word, as mlx-lm does
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lead = ""  # only spaces so far: held until a word shows which one to trim
        self._ready = ""  # decoded, not yet taken by `last_segment`
        self._started = not trim_space

    def add_token(self, token: int) -> None:
        piece = self._table[token] if 0 <= token < len(self._table) else b""
        self._take(self._decoder.decode(piece))

    @property
    def last_segment(self) -> str:
        segment, self._ready = self._ready, ""
        return segment

    def finalize(self) -> None:
        self._take(self._decoder.decode(b"", final=True))  # a character left incomplete: U+FFFD
        if not self._started:
            self._ready += self._lead.removeprefix(" ")
            self._lead, self._started = "", True

    def _take(self, text: str) -> None:
        if not self._started:
            lead = self._lead + text
            if not lead.strip(" "):
                self._lead = lead
                return
            text, self._lead, self._started = lead.removeprefix(" "), "", True
        self._ready += text
