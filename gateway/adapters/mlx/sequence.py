"""One request's decoding state: sampled tokens in, deltas out.

It does not care how tokens are produced: the solo decoder and the batch generator
(one `TokenSequence` per batch uid) both drive it.
"""

from __future__ import annotations

from gateway.adapters.base import Delta, Finish, FinishReason, GenerationRequest, ReasoningDelta, Tally, TokenUsage
from gateway.adapters.mlx.model import LoadedModel
from gateway.adapters.mlx.parse import OutputParser
from gateway.adapters.mlx.render import tool_dicts

__all__ = ["TokenSequence"]


class TokenSequence:
    def __init__(self, request: GenerationRequest, prompt: list[int], model: LoadedModel) -> None:
        self.prompt_tokens = len(prompt)
        self.generated = 0
        self.reasoning = 0
        self._eos = model.eos
        self._detokenizer = model.detokenizer()
        self._parser = OutputParser(
            model.markers, tools=tool_dicts(request.tools), stop=request.stop, initial=model.initial_state(prompt)
        )
        self.stopped = False  # EOS or a stop string: the answer is complete

    def push(self, token: int) -> list[Delta]:
        """Account for one sampled token; sets `stopped` when it ends the answer."""
        self.generated += 1
        if token in self._eos:
            self.stopped = True
            return []
        self._detokenizer.add_token(token)
        deltas = self._parser.feed(self._detokenizer.last_segment)
        if self._parser.state == "reasoning" or any(isinstance(d, ReasoningDelta) for d in deltas):
            self.reasoning += 1
        self.stopped = self._parser.stopped
        return deltas

    def tally(self, cached: int = 0) -> Tally:
        """The counts so far (`cached`: prompt tokens taken from the prefix cache)."""
        return Tally(usage=self._usage(cached))

    def _usage(self, cached: int) -> TokenUsage:
        return TokenUsage(input_tokens=self.prompt_tokens, output_tokens=self.generated, cached_tokens=cached,
                          reasoning_tokens=self.reasoning)

    def finish(self, cached: int = 0) -> list[Delta]:
        """Held-back text, then the one `Finish` (`length` unless the answer completed).

        `cached`: prompt tokens that came from the prefix cache instead of being computed."""
        self._detokenizer.finalize()
        tail = self._parser.feed(self._detokenizer.last_segment) + self._parser.close(cut=not self.stopped)
        reason: FinishReason = "length"
        if self.stopped:
            reason = "tool_calls" if self._parser.calls else "stop"
        return [*tail, Finish(reason=reason, usage=self._usage(cached))]
