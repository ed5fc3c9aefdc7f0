"""mlx_lm.server, unchanged but for one logits processor that makes a random-weight model say `$FORCE_TEXT`, then EOS.

    FORCE_TEXT='...' python -m tests.adapters.upstream.forced_mlx_lm_server --model DIR --port N --host 127.0.0.1

Everything else is mlx_lm.server's own: its HTTP handling, chat template, generation loop, detokenizer and tool
call parser, which is what the upstream adapter's tests talk to. (The gateway's own `testing: {force: ...}` hook
does the same inside its MLX worker.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def forcing(script: list[int], eos: int) -> Any:
    import mlx.core as mx

    prompt_length: list[int] = []

    def force(tokens: Any, logits: Any) -> Any:
        if not prompt_length:
            prompt_length.append(tokens.size)  # the first call sees the prompt alone
        step = tokens.size - prompt_length[0]
        target = script[step] if step < len(script) else eos
        allowed = mx.arange(logits.shape[-1]) == target
        return mx.where(allowed, mx.zeros_like(logits), mx.full(logits.shape, -1e9, dtype=logits.dtype))

    return force


def main() -> None:
    from mlx_lm import server
    from mlx_lm.utils import load_tokenizer

    model = sys.argv[sys.argv.index("--model") + 1]
    tokenizer = load_tokenizer(Path(model))
    script = tokenizer.encode(os.environ["FORCE_TEXT"], add_special_tokens=False)
    original = server._make_logits_processors

    def processors(args: Any) -> list[Any]:
        return [*original(args), forcing(script, tokenizer.eos_token_id)]

    server._make_logits_processors = processors
    server.main()


if __name__ == "__main__":
    main()
