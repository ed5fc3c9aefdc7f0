"""The one place the gateway touches mlx-lm: every `mlx_lm` import of the package is in this file.

Written against mlx-lm 0.32.x (pyproject pins `mlx-lm>=0.32.2,<0.33`; checked with 0.32.2). An mlx-lm upgrade
is a diff of this file: loading, KV caches, the batch generator, samplers, the text state machine, tool parsers
and tokenizer markers. Besides thin wrappers it mirrors, without importing mlx-lm, the rules by which mlx-lm's
tokenizer loader picks a tool parser and think markers (`infer_tool_parser`, `infer_thinking`, from
`mlx_lm.tokenizer_utils`), which the gateway applies to a model's files before loading it (`traits.py`);
tests/adapters/mlx/test_traits.py compares the mirror with mlx-lm's own functions.

mlx-lm (and so MLX) is imported inside each function: the gateway process imports this module for the mirrored
rules and must never load MLX; only worker processes call the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

if TYPE_CHECKING:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.generate import BatchGenerator
    from mlx_lm.models.cache import KVCache, TokenBuffer

__all__ = [
    "MLX_LM_VERSIONS", "MODEL_TYPES_WITH_TOKENIZER_DEFAULTS", "TEMPLATE_RULES", "THINK_PAIRS", "XTML_TOKENS", "Batch",
    "Cache", "Detokenizer", "GeneratedToken", "LogitsProcessor", "ParseCall", "PromptProgress", "Sampler",
    "TextMatcher", "Tokenizer", "ToolParser", "byte_level_char", "generation_stream", "infer_thinking",
    "infer_tool_parser", "is_kv_cache", "kv_cache", "load", "make_prompt_cache", "make_sampler", "named_tool_parser",
    "prompt_ends_in_think", "qwen2_model", "think_markers", "token_buffer", "token_bytes",
    "tokenizer_tool_parser", "trim_prompt_cache", "weights_bytes",
]

MLX_LM_VERSIONS = ">=0.32.2,<0.33"

Cache = list[Any]  # one mlx-lm cache object per layer (KVCache, RotatingKVCache, ArraysCache, ...)
Sampler = Callable[["mx.array"], "mx.array"]  # log-probabilities → sampled token ids
LogitsProcessor = Callable[["mx.array", "mx.array"], "mx.array"]  # (tokens so far, logits) → logits
ParseCall = Callable[[str, Any], Any]  # (text between the markers, tools) → a call dict or a list of them


class Detokenizer(Protocol):
    @property
    def last_segment(self) -> str:
        """The text added since the last read."""

    def add_token(self, token: int) -> None: ...
    def finalize(self) -> None: ...


class Tokenizer(Protocol):
    """What the gateway uses of mlx-lm's `TokenizerWrapper` (which forwards the rest to the HF tokenizer)."""

    has_chat_template: bool
    eos_token_id: int | None
    eos_token_ids: Collection[int]
    detokenizer: Detokenizer
    has_tool_calling: bool
    tool_parser: ParseCall | None
    tool_call_start: str | None
    tool_call_end: str | None
    has_thinking: bool
    think_start: str | None
    think_end: str | None
    think_start_tokens: tuple[int, ...] | None

    def apply_chat_template(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any: ...
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def rfind_think_start(self, tokens: list[int]) -> int: ...
    def rfind_think_end(self, tokens: list[int]) -> int: ...


# ---------------------------------------------------------------- loading


def load(path: Path) -> tuple[nn.Module, Tokenizer]:
    """Weights and tokenizer of the model directory `path` (never a hub id: callers resolve sources first)."""
    from mlx_lm.utils import load as mlx_load

    model, tokenizer = mlx_load(str(path))[:2]
    return model, cast(Tokenizer, tokenizer)  # mlx-lm's TokenizerWrapper, seen through our protocol


def token_bytes(tokenizer: Tokenizer) -> tuple[list[bytes], bool] | None:
    """(each token's bytes, whether the first space is trimmed) for the streaming detokenizers mlx-lm picked
    from the tokenizer's decoder (byte-level BPE, SentencePiece); None for any other (mlx-lm's naive one)."""
    from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, SPMStreamingDetokenizer

    detokenizer: Any = tokenizer.detokenizer
    if isinstance(detokenizer, SPMStreamingDetokenizer):
        # Byte tokens are already bytes here; the word marker U+2581 stands for a space.
        return [piece.replace("\u2581".encode(), b" ") for piece in detokenizer.tokenmap], detokenizer.trim_space
    if isinstance(detokenizer, BPEStreamingDetokenizer):
        printable = _byte_level_alphabet()
        return [_byte_level(piece, printable) for piece in detokenizer.tokenmap], True
    return None


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's printable stand-in character for each byte (the GPT-2 convention)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    alphabet = {chr(b): b for b in kept}
    shifted = 0
    for b in range(256):
        if b not in kept:
            alphabet[chr(256 + shifted)] = b
            shifted += 1
    return alphabet


def byte_level_char(byte: int) -> str:
    """The character byte-level BPE writes for `byte` (its token for that single byte has this name)."""
    return next(c for c, b in _byte_level_alphabet().items() if b == byte)


def _byte_level(piece: str, alphabet: dict[str, int]) -> bytes:
    # Characters outside the alphabet (in added tokens such as `<|im_end|>`) stand for themselves.
    out = bytearray()
    for c in piece:
        b = alphabet.get(c)
        out += c.encode() if b is None else bytes((b,))
    return bytes(out)


class ToolParser(NamedTuple):
    name: str
    call_start: str
    call_end: str
    parse: ParseCall


def named_tool_parser(name: str) -> ToolParser:
    """One of mlx-lm's tool parser modules (`mlx_lm/tool_parsers/<name>.py`)."""
    import importlib

    module = importlib.import_module(f"mlx_lm.tool_parsers.{name}")
    return ToolParser(name, module.tool_call_start, module.tool_call_end, module.parse_tool_call)


def tokenizer_tool_parser(tokenizer: Tokenizer) -> ToolParser | None:
    """The parser mlx-lm chose when loading the tokenizer (`tool_parser_type`, else inferred), or None."""
    parse, start = tokenizer.tool_parser, tokenizer.tool_call_start
    if not tokenizer.has_tool_calling or parse is None or start is None:
        return None
    name = getattr(parse, "__module__", "").rsplit(".", 1)[-1]  # mlx_lm.tool_parsers.<name>
    return ToolParser(name, start, tokenizer.tool_call_end or "", parse)


def think_markers(tokenizer: Tokenizer) -> tuple[str, str] | None:
    """(start, end) of the model's think blocks, or None when it has none."""
    start, end = tokenizer.think_start, tokenizer.think_end
    if not tokenizer.has_thinking or start is None or end is None:
        return None
    return start, end


def prompt_ends_in_think(tokenizer: Tokenizer, prompt: list[int]) -> bool:
    """The prompt's last think marker opens a block (the template started the answer inside one)."""
    if tokenizer.think_start_tokens is None:
        return False
    return tokenizer.rfind_think_start(prompt) > tokenizer.rfind_think_end(prompt)


def qwen2_model(config: Mapping[str, Any]) -> nn.Module:
    """A qwen2 model with freshly initialised weights (dummy models)."""
    from mlx_lm.models import qwen2

    return qwen2.Model(qwen2.ModelArgs.from_dict(dict(config)))


# ---------------------------------------------------------------- KV caches


def weights_bytes(model: nn.Module) -> int:
    from mlx.utils import tree_flatten

    arrays = tree_flatten(model.parameters())
    assert isinstance(arrays, list)
    return sum(int(array.nbytes) for _, array in arrays)


def make_prompt_cache(model: nn.Module) -> Cache:
    from mlx_lm.models.cache import make_prompt_cache as make

    layers: Cache = make(model)
    return layers


def trim_prompt_cache(cache: Cache, tokens: int) -> None:
    from mlx_lm.models.cache import trim_prompt_cache as trim

    trim(cache, tokens)


def is_kv_cache(layer: object) -> bool:
    """mlx-lm's plain growing KV cache, recognised without importing MLX (tests use stand-in layers)."""
    kind = type(layer)
    return kind.__name__ == "KVCache" and kind.__module__ == "mlx_lm.models.cache"


def kv_cache(keys: mx.array, values: mx.array, offset: int) -> KVCache:
    """A plain KV cache holding `keys` and `values` (shape [batch, heads, tokens, dim]) up to `offset`."""
    from mlx_lm.models.cache import KVCache

    layer = KVCache()
    layer.keys, layer.values, layer.offset = keys, values, offset
    return layer


def token_buffer(tokens: list[int]) -> TokenBuffer:
    """The growing token history logits processors receive (`update_and_fetch(token)`)."""
    from mlx_lm.models.cache import TokenBuffer

    return TokenBuffer(tokens)


# ---------------------------------------------------------------- generation


def generation_stream() -> mx.Stream:
    """The stream mlx-lm computes on (thread-local: the engine thread's own)."""
    from mlx_lm.generate import generation_stream as stream

    return cast("mx.Stream", stream)  # a thread-local proxy that behaves as the stream


def make_sampler(temperature: float, top_p: float) -> Sampler:
    from mlx_lm.sample_utils import make_sampler as make

    return make(temp=temperature, top_p=top_p)


class PromptProgress(Protocol):
    """A prompt chunk computed by the batch generator."""

    uid: int
    progress: tuple[int, int]  # (prompt tokens computed, prompt tokens)
    end_of_prompt: bool


class GeneratedToken(Protocol):
    """A token sampled by the batch generator; `finish_reason` is set when it ended the sequence (EOS, budget)."""

    uid: int
    token: int
    finish_reason: str | None
    prompt_cache: Cache | None
    all_tokens: list[int] | None


class Batch:
    """mlx-lm's `BatchGenerator`, one sequence per `insert`, ended by the model's EOS tokens or its budget."""

    def __init__(self, model: nn.Module, *, max_batch: int, prefill_step_size: int, eos: Collection[int]) -> None:
        from mlx_lm.generate import BatchGenerator, StopSequences

        self._stop = StopSequences([[token] for token in sorted(eos)])
        self._generator: BatchGenerator = BatchGenerator(
            model, completion_batch_size=max_batch, prefill_batch_size=max_batch, prefill_step_size=prefill_step_size
        )

    def set_prefill_step(self, tokens: int) -> None:
        """Prompt tokens computed per sequence and step, from the next step on."""
        self._generator.prefill_step_size = tokens

    def insert(self, prompt: list[int], *, budget: int, cache: Cache | None, held: list[int], sampler: Sampler,
               processors: list[LogitsProcessor]) -> int:
        """Add a sequence: `held` are the tokens `cache` holds, `prompt` the ones still to feed. Its uid."""
        (uid,) = self._generator.insert(
            # mlx-lm types `caches` as lists of caches but accepts None for "make a fresh one".
            [list(prompt)], max_tokens=[budget], caches=[cast(Any, cache)], all_tokens=[list(held)],
            samplers=[sampler],
            logits_processors=[processors], stop_sequences=[self._stop],
        )
        return int(uid)

    def step(self) -> tuple[list[PromptProgress], list[GeneratedToken]]:
        """One step: a prompt chunk for sequences still prefilling, one token for the others."""
        prompts, tokens = self._generator.next()
        return prompts, tokens

    def remove(self, uid: int) -> tuple[Cache | None, list[int]]:
        """Take a sequence out: its cache and the tokens the cache holds."""
        caches = self._generator.remove([uid], return_prompt_caches=True)
        cache, tokens = caches.get(uid, (None, []))
        return cache, list(tokens)


class TextMatcher:
    """mlx-lm's `TextStateMachine`: decoded text → (state, text) segments, markers stripped, a possible partial
    marker held back. Transitions map a state to (marker, next state); a next state of None ends the text."""

    def __init__(self, transitions: dict[str, list[tuple[str, str | None]]], initial: str) -> None:
        from mlx_lm.generate import TextStateMachine

        self._machine = TextStateMachine(transitions)
        self._runtime = self._machine.make_state(initial)

    @property
    def state(self) -> str | None:
        state: str | None = self._runtime[0]
        return state

    def feed(self, text: str) -> list[tuple[str | None, str]]:
        segments: list[tuple[str | None, str]]
        self._runtime, segments = self._machine.split(self._runtime, text)
        return segments

    def flush(self) -> tuple[str | None, str]:
        """The held-back text and the state it belongs to (end of generation)."""
        self._runtime, held, state = self._machine.flush(self._runtime)
        return state, held


# ---------------------------------------------------------------- mlx-lm's inference rules, mirrored

# mlx_lm.tokenizer_utils._infer_tool_parser: the first rule whose markers the chat template contains names the
# parser. A rule is a list of alternatives; an alternative matches when the template has all of its strings.
TEMPLATE_RULES: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("minimax_m2", (("<minimax:tool_call>",),)),
    ("gemma4", (("<|tool_call>", "<tool_call|>"),)),
    ("function_gemma", (("<start_function_call>",),)),
    ("longcat", (("<longcat_tool_call>",),)),
    ("glm47", (("<arg_key>",),)),
    ("pythonic", (("<|tool_list_start|>",), ("<|tool_call_start|>",))),
    ("qwen3_coder", (("<tool_call>\\n<function=",), ("<tool_call>\n<function=",))),
    ("kimi_k2", (("<|tool_calls_section_begin|>",),)),
    ("minicpm5", (('<function name="', '<param name="'),)),
    ("mistral", (("[TOOL_CALLS]",),)),
    ("muse_spark", (("<atem:function_calls>",),)),
    ("json_tools", (("<tool_call>", "tool_call.name"),)),
)
XTML_TOKENS = ("<|open|>", "<|close|>", "<|sep|>", "<|end_of_msg|>")
THINK_PAIRS = (("<think>", "</think>"), ("<longcat_think>", "</longcat_think>"), ("<|think:start|>", "<|think:end|>"),
               ("<|channel>", "<channel|>"))
# Model modules with TOKENIZER_DEFAULTS (a parser or template for checkpoints that name none): only loading knows.
MODEL_TYPES_WITH_TOKENIZER_DEFAULTS = frozenset({"muse_spark"})


def infer_tool_parser(chat_template: str | None, vocab: Collection[str]) -> str | None:
    """The parser mlx-lm infers for a tokenizer with this template (None: several or none) and vocabulary."""
    if chat_template is not None:
        for name, alternatives in TEMPLATE_RULES:
            if any(all(marker in chat_template for marker in alternative) for alternative in alternatives):
                return name
    if all(token in vocab for token in XTML_TOKENS):
        return "kimi_k3"
    if "<|tool_call_start|>" in vocab and "<|tool_call_end|>" in vocab:
        return "pythonic"
    return None


def infer_thinking(vocab: Collection[str]) -> bool:
    """mlx_lm.tokenizer_utils._infer_thinking found think markers in this vocabulary."""
    return any(start in vocab and end in vocab for start, end in THINK_PAIRS) or all(t in vocab for t in XTML_TOKENS)
