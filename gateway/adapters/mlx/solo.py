"""One sequence decoded on its own, without the batch machinery.

With a single request in flight (the usual case for one agent) a batch costs about a
tenth of the decode speed on small models (padding masks, per-row bookkeeping), so the
scheduler decodes it here instead. The loop keeps one token in flight: while the host
handles token n, token n+1 is already being computed. When a second request arrives the
state is handed to the batch generator (`detach`), and back again when only one remains.

Cache invariant: `tokens` are exactly the tokens whose keys and values are in `cache`
(possibly still being computed); the token sampled last (`pending`) is not among them.
"""

from __future__ import annotations

from typing import Any

from gateway.adapters.mlx import mlxlm

__all__ = ["SoloDecoder"]

CLEAR_EVERY = 256  # decode steps between releases of MLX's buffer cache, as mlx-lm does


class SoloDecoder:
    def __init__(
        self,
        model: Any,
        cache: mlxlm.Cache,
        cached: list[int],
        rest: list[int],
        sampler: mlxlm.Sampler,
        processors: list[mlxlm.LogitsProcessor] | None,
    ) -> None:
        assert rest, "at least one token must be fed"
        self._model = model
        self.cache = cache
        self.tokens = list(cached)
        self.rest = list(rest)  # prompt tokens not yet fed; the last one starts decoding
        self._sampler = sampler
        self._processors = processors or []
        self._stream = mlxlm.generation_stream()
        self._context: Any = None
        self._pending: Any = None
        self._steps = 0

    @property
    def prefilling(self) -> bool:
        return len(self.rest) > 1

    @property
    def holds_sample(self) -> bool:
        """A token sampled and not yet returned: `detach` hands it over to be emitted. Before the first step,
        `rest` holds tokens to feed (the prompt, or a token already emitted that a cache trim took back)."""
        return self._pending is not None

    def prefill(self, limit: int) -> int:
        """Feed up to `limit` prompt tokens (never the last one); returns how many were fed."""
        import mlx.core as mx

        count = min(limit, len(self.rest) - 1)
        if count <= 0:
            return 0
        chunk, self.rest = self.rest[:count], self.rest[count:]
        with mx.stream(self._stream):
            self._model(mx.array(chunk)[None], cache=self.cache)
            mx.eval([layer.state for layer in self.cache])
        self.tokens += chunk
        mx.clear_cache()
        return count

    def step(self) -> int:
        """The next token. The first call feeds the prompt's last token."""
        import mlx.core as mx

        with mx.stream(self._stream):
            if self._pending is None:
                self._start()
            current = self._pending
            self._pending = self._advance(current)
            mx.async_eval(self._pending)
            token = int(current.item())
        self.tokens.append(token)
        self._steps += 1
        if self._steps % CLEAR_EVERY == 0:
            mx.clear_cache()
        return token

    def _start(self) -> None:
        import mlx.core as mx

        assert len(self.rest) == 1, "prefill first"
        if self._processors:
            self._context = mlxlm.token_buffer(self.tokens)
        last = self.rest[0]
        self.rest = []
        self._pending = self._advance(mx.array([last], dtype=mx.uint32))
        self.tokens.append(last)

    def _advance(self, token: Any) -> Any:
        """Feed `token` (shape [1]) and sample what follows it, lazily."""
        import mlx.core as mx

        logits = self._model(token[None], cache=self.cache)[:, -1, :]
        if self._processors:
            context = self._context.update_and_fetch(token)
            for processor in self._processors:
                logits = processor(context, logits)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return self._sampler(logprobs)

    def detach(self) -> tuple[list[Any], list[int], list[int]]:
        """Stop here: (cache, the tokens it holds, the tokens still to feed).

        While prefilling, the tokens to feed are the rest of the prompt. While decoding, it is
        the one sampled but not yet returned token: the caller must emit it before feeding it."""
        import mlx.core as mx

        if self._pending is None:
            return self.cache, self.tokens, self.rest
        pending = int(self._pending.item())
        self._pending = None
        mx.eval([layer.state for layer in self.cache])
        return self.cache, self.tokens, [pending]

    def settled_cache(self) -> tuple[list[Any], list[int]]:
        """The cache and its tokens once computed (the in-flight sample is dropped)."""
        import mlx.core as mx

        self._pending = None
        mx.eval([layer.state for layer in self.cache])
        return self.cache, self.tokens
