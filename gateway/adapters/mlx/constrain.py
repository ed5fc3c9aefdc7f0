"""Constrained decoding in the worker: a request's `Constraint` becomes a llguidance grammar, and a logits
processor on that request's row only lets through the tokens the grammar allows.

The grammar is Lark with llguidance's `%json` for schemas. Tool calls are written in the model's own call format
(`CALL_GRAMMARS`, keyed by mlx-lm parser name), so the usual parser turns them into calls. A prompt that ends
inside an open think block leaves the model free until the think end; the constraint starts there. A thinking
model whose template did not open one may open it itself as its first output: that block is free too.

Compiling is the costly part (the tokenizer once per model, each grammar once): a pristine matcher per grammar
text is cached and copied per request. The engine's fuel limits bound compile and per-token mask time; a grammar
the engine rejects fails the request as invalid (the gateway validates schemas first, so that is rare). Each mask is
computed while the model step that needs it runs (bench/mask_overlap.py measures what that saves).

Engine thread only; numpy, mlx and llguidance are imported when a constraint is first used.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from gateway.adapters.base import Constraint
from gateway.adapters.mlx.call_formats import FORMATS, compact, sequence
from gateway.grammars import literal_regex

__all__ = ["CALL_GRAMMARS", "ConstraintError", "Constraints"]

log = logging.getLogger("gateway.mlx.constrain")

CALL_GRAMMARS = frozenset(FORMATS)  # parsers whose call format has a grammar here (call_formats.py)
CACHED_GRAMMARS = 64


class ConstraintError(Exception):
    pass


class Constraints:
    """Per loaded model: its llguidance tokenizer and compiled grammars."""

    def __init__(self, tokenizer: Any, parser_name: str | None, think_end: str | None,
                 think_start: str | None = None, overlap: bool = True) -> None:
        self._hf = tokenizer
        self.overlap = overlap  # compute each mask while the model step runs (bench/mask_overlap.py measures it)
        self._parser = parser_name
        self._think_end = think_end
        self._think_start = think_start
        self._tokenizer: Any = None
        self._compiled: OrderedDict[str, Any] = OrderedDict()

    def processor(self, constraint: Constraint, prompt_length: int, thinking: bool,
                  may_think: bool = True) -> Callable[[Any, Any], Any] | None:
        """A logits processor enforcing `constraint` from the first generated token (after the open think block
        when `thinking`, or one the model opens itself when `may_think`); None for optional calls in a call format
        with no grammar here (left to the parser)."""
        if constraint.optional and self._parser not in CALL_GRAMMARS:
            return None
        grammar = self.grammar(constraint, thinking, may_think)
        matcher = self._matcher(grammar)
        return _Processor(matcher, prompt_length, self._eos(), self.overlap)

    def grammar(self, constraint: Constraint, thinking: bool, may_think: bool = True) -> str:
        """`thinking`: the prompt ends inside an open think block; `may_think`: the request asks for reasoning, so
        a think block the model opens itself as its first output is left free."""
        if constraint.calls:
            body = self._calls(constraint)
            if constraint.optional:  # text, then perhaps calls: the marker that opens a call switches over
                body = self._text_or_calls(body)
            elif body is None:
                raise ConstraintError(f"None of the tools can be called in this model's tool-call format "
                                      f"({self._parser}): its parser could not read their names or parameters.")
        else:
            body = "answer\nanswer: %json " + json.dumps(compact(constraint.schema or {"type": "object"}))
        if not (thinking and self._think_end):
            if constraint.optional or not may_think or not self._think_start or not self._think_end:
                return "start: " + body
            # The template did not open a think block, but a thinking model may open one itself: it stays free, and
            # the answer or the call is held from its end (or from the first token when the model does not think).
            first, _, rules = body.partition("\n")
            opening, closing = self._token(self._think_start), self._token(self._think_end)
            if self._special(self._think_end) is not None:
                return f"start: ({opening} /(?s:.*)/ {closing})? {first}\n{rules}"
            thought = _split_at(self._think_end, "THINKING", "THOUGHT")[1]
            return "\n".join([f"start: ({opening} THOUGHT)? {first}", rules, thought])
        think_end = self._token(self._think_end)
        if not constraint.optional:
            return f"start: /(?s:.*)/ {think_end} {body}"
        # Held calls force nothing, not even the end of the think block: the model may stop while thinking.
        first, _, rules = body.partition("\n")
        if self._special(self._think_end) is not None:  # thinking text cannot write a special token
            return f"start: /(?s:.*)/ ({think_end} {first})?\n{rules}"
        return "\n".join([f"start: THINKING | THOUGHT {first}", rules,
                           *_split_at(self._think_end, "THINKING", "THOUGHT")])

    def _calls(self, constraint: Constraint) -> str | None:
        """The calls, from their opening marker on: `OPENER after`, then the rules `after` uses; None when the
        format can carry a call to none of the tools."""
        if self._parser not in CALL_GRAMMARS:
            raise ConstraintError(f"This model's tool-call format ({self._parser}) has no grammar: "
                                  "tool_choice cannot be enforced.")
        fmt = FORMATS[str(self._parser)]
        tools = {index: fmt.tool(index, name, schema, constraint.inputs.get(name), self._token)
                 for index, (name, schema) in enumerate(constraint.calls.items())}
        rules = [rule for rule in tools.values() if rule is not None]
        if not rules:
            return None
        # One alternative per tool, split at its name, so each carries its own arguments grammar.
        body = "body: " + " | ".join(f"tool{index}" for index, rule in tools.items() if rule is not None)
        limit = 1 if not constraint.parallel else constraint.max_calls

        def more(item: str) -> str:  # the further calls
            return "" if limit == 1 else f"({item})*" if limit is None else f"({item})~0..{limit - 1}"

        head, tail, separator = (json.dumps(text) if text else "" for text in (fmt.head, fmt.tail, fmt.separator))
        end = self._token(fmt.end) if fmt.end else ""
        if fmt.shared:  # one block: [TOOL_CALLS]name[ARGS]{...}name[ARGS]{...}, <|tool_call_start|>[f(), g()]<|...|>
            after = sequence(head, "body", more(sequence(separator, "body")), tail, end)
            return "\n".join([f"{self._token(fmt.start)} {after}", body, *rules])
        # a block per call: <tool_call>\n...\n</tool_call>, again after a newline for each further call
        block = sequence(head, "body", tail, end)
        call = [f"call: {self._token(fmt.start)} {block}"] if limit != 1 else []
        after = sequence(block, more(sequence(separator, "call")))
        return "\n".join([f"{self._token(fmt.start)} {after}", *call, body, *rules])

    def _text_or_calls(self, calls: str | None) -> str:
        """Free text, then perhaps the calls. A special-token opener cannot be written as text, so after any text it
        switches to a call. A plain-text one (Qwen's `<tool_call>` is an ordinary added token) must be kept out of
        the text: a text-only answer never contains it (FREE_TEXT), and text that reaches it (OPENED, one lexeme
        ending at its first occurrence) goes on as a held call. No calls (the format can carry none of them): text."""
        opener = FORMATS[str(self._parser)].start
        if calls is None:
            special = self._special(opener) is not None
            return "(/(?s:.*)/)" if special else f"FREE_TEXT\n{_split_at(opener, 'FREE_TEXT', 'OPENED')[0]}"
        first, _, rules = calls.partition("\n")
        if self._special(opener) is not None:
            return f"(/(?s:.*)/ ({first})?)\n{rules}"
        after = first.removeprefix(self._token(opener)).strip()
        return "\n".join([f"(FREE_TEXT | OPENED {after})", rules, *_split_at(opener, "FREE_TEXT", "OPENED")])

    def _token(self, text: str | None) -> str:
        """A marker as the grammar names it: the special token when it is one, else its text."""
        assert text is not None
        special = self._special(text)
        return f"<[{special}]>" if special is not None else json.dumps(text)

    def _special(self, text: str) -> int | None:
        ids = self._hf.encode(text, add_special_tokens=False)
        if len(ids) == 1 and self._llg_tokenizer().is_special_token(ids[0]):
            return int(ids[0])
        return None

    def _llg_tokenizer(self) -> Any:
        if self._tokenizer is None:
            import llguidance.hf

            hf = getattr(self._hf, "_tokenizer", self._hf)  # mlx-lm's wrapper holds the HF tokenizer
            self._tokenizer = llguidance.hf.from_tokenizer(hf, n_vocab=len(hf))
        return self._tokenizer

    def _eos(self) -> list[int]:
        ids = getattr(self._hf, "eos_token_ids", None) or [self._hf.eos_token_id]
        return sorted(int(i) for i in ids)

    def _matcher(self, grammar: str) -> Any:
        import llguidance

        pristine = self._compiled.get(grammar)
        if pristine is None:
            pristine = llguidance.LLMatcher(self._llg_tokenizer(), llguidance.grammar_from("lark", grammar),
                                            log_level=0)
            if pristine.is_error():
                raise ConstraintError(f"The constraint does not compile: {pristine.get_error().splitlines()[0]}")
            self._compiled[grammar] = pristine
            while len(self._compiled) > CACHED_GRAMMARS:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(grammar)
        return pristine.deep_copy()


def _split_at(marker: str, before: str, reached: str) -> list[str]:
    """Two lexemes for a plain-text `marker`: `before`, text that never contains it, and `reached`, text that ends at
    its first occurrence (one lexeme, so writing the marker cannot stay part of the free text)."""
    literal = literal_regex(marker)
    return [f"{before}: /(?s:.*)/ & ~/(?s:.*{literal}.*)/", f"{reached}: /(?s:.*{literal})/ & ~/(?s:.*{literal}.+)/"]


class _Processor:
    """mlx-lm logits processor for one row: consume the tokens generated since the last call, mask the rest.

    Tokens are counted from the context length, not from calls, so a row that moves between the solo decoder
    and the batch (which recomputes the last step) is consumed exactly once per token."""

    def __init__(self, matcher: Any, prompt_length: int, eos: list[int], overlap: bool = True) -> None:
        self._matcher = matcher
        self._overlap = overlap
        self._consumed = prompt_length
        self._eos = eos
        self._failed = False

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx
        import numpy as np

        size = int(tokens.size)
        if size > self._consumed:
            for token in tokens[self._consumed:].tolist():
                if not self._failed and not self._matcher.consume_token(int(token)):
                    self._failed = True
                    log.warning("constraint broken", extra={"fields": {"error": self._matcher.get_error()[:200]}})
            self._consumed = size
        vocab = logits.shape[-1]
        allowed = np.zeros(vocab, dtype=bool)
        if self._failed or self._matcher.is_stopped():
            allowed[[t for t in self._eos if t < vocab]] = True
        else:
            if self._overlap:
                # The step runs now, on MLX's own thread, while this one computes the mask (the engine drops the
                # GIL): only the sampling after the step needs it. Not any earlier: queued before the token it is
                # fed is read back, the step would make that read wait for it.
                mx.async_eval(logits)
            bits = np.unpackbits(np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
            n = min(vocab, bits.size)
            allowed[:n] = bits[:n].astype(bool)
        return mx.where(mx.array(allowed), logits, mx.array(-float("inf"), dtype=logits.dtype))
