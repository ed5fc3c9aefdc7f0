"""`source: dummy`: a model with seeded random weights, built from the manifest's architecture.

It is written in mlx-lm's own on-disk format (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json) and loaded through `mlx_lm.load`, so the
whole inference path (template, tokenizer, model, sampler, detokenizer, tool
parser) runs for real without downloading anything. The same architecture always
gives byte-identical files, cached under a directory named by their hash.

Runs inside a worker process only: MLX and tokenizers are imported when building.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import msgspec

from gateway.config import DummyArch

__all__ = ["CHAT_TEMPLATE", "DUMMY_FORMAT", "build_dummy", "dummy_dir", "ensure_dummy"]

# Bump when the files this module writes change, so old cache entries are not reused.
DUMMY_FORMAT = 1

FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
MARKER_TOKENS = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")

# ChatML with a tools section, think blocks and tool calls/responses. Deliberately strict
# (a system message only first, no unknown roles), like the templates that break on
# agent histories, so the gateway's normalisation is exercised by every dummy model.
CHAT_TEMPLATE = r"""
{%- if messages and messages[0].role == 'system' -%}
{%- set system_text = messages[0].content -%}
{%- set turns = messages[1:] -%}
{%- else -%}
{%- set system_text = '' -%}
{%- set turns = messages -%}
{%- endif -%}
{%- if system_text or tools -%}
{{- '<|im_start|>system\n' + system_text -}}
{%- if tools -%}
{%- if system_text %}{{ '\n\n' }}{% endif -%}
{{- '# Tools\n\nThese functions are available, described inside <tools></tools>:\n<tools>' -}}
{%- for tool in tools %}{{ '\n' + (tool | tojson) }}{% endfor -%}
{{- '\n</tools>\n\nTo call functions, write one JSON object' -}}
{{- ' {"name": <function name>, "arguments": <arguments object>} per call, each in <tool_call></tool_call> tags.' -}}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in turns -%}
{%- if message.role == 'system' -%}
{{- raise_exception('A system message may only come first.') -}}
{%- elif message.role == 'user' -%}
{{- '<|im_start|>user\n' + message.content + '<|im_end|>\n' -}}
{%- elif message.role == 'assistant' -%}
{{- '<|im_start|>assistant\n' -}}
{%- if message.reasoning_content -%}
{{- '<think>\n' + message.reasoning_content + '\n</think>\n\n' -}}
{%- endif -%}
{%- if message.content %}{{ message.content }}{% endif -%}
{%- for call in message.tool_calls or [] -%}
{%- set tool_call = call.function if call.function is defined else call -%}
{%- if message.content or not loop.first %}{{ '\n' }}{% endif -%}
{{- '<tool_call>\n{"name": ' + (tool_call.name | tojson) + ', "arguments": ' -}}
{%- if tool_call.arguments is string %}{{ tool_call.arguments }}{% else %}{{ tool_call.arguments | tojson }}{% endif -%}
{{- '}\n</tool_call>' -}}
{%- endfor -%}
{{- '<|im_end|>\n' -}}
{%- elif message.role == 'tool' -%}
{%- if loop.first or loop.previtem.role != 'tool' %}{{ '<|im_start|>user' }}{% endif -%}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' -}}
{%- if loop.last or loop.nextitem.role != 'tool' %}{{ '<|im_end|>\n' }}{% endif -%}
{%- else -%}
{{- raise_exception('Unknown role: ' + message.role) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- if enable_thinking is defined and not enable_thinking %}{{ '<think>\n\n</think>\n\n' }}{% endif -%}
{%- endif -%}
""".strip()


def dummy_key(arch: DummyArch) -> str:
    payload = msgspec.json.encode({"format": DUMMY_FORMAT, "arch": arch, "template": CHAT_TEMPLATE})
    return hashlib.sha256(payload).hexdigest()[:20]


def dummy_dir(arch: DummyArch, cache_dir: Path) -> Path:
    return cache_dir / f"dummy-{dummy_key(arch)}"


def ensure_dummy(arch: DummyArch, cache_dir: Path) -> Path:
    """The model directory for `arch`, built on first use; safe when several workers race."""
    target = dummy_dir(arch, cache_dir)
    if all((target / name).is_file() for name in FILES):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    try:
        build_dummy(arch, staging)
        try:
            os.rename(staging, target)  # atomic: readers see all files or none
        except OSError:
            if not all((target / name).is_file() for name in FILES):
                raise  # not a lost race: something else is wrong
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_dummy(arch: DummyArch, dest: Path) -> None:
    """Write the four files of a dummy model into `dest`."""
    tokenizer = _train_tokenizer(arch)
    eos_id = tokenizer.token_to_id("<|im_end|>")
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": arch.hidden_size,
        "num_hidden_layers": arch.layers,
        "num_attention_heads": arch.heads,
        "num_key_value_heads": arch.kv_heads,
        "intermediate_size": arch.intermediate_size,
        "vocab_size": arch.vocab_size,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
        "torch_dtype": arch.dtype,
        "bos_token_id": None,
        "eos_token_id": eos_id,
    }
    _write_json(dest / "config.json", config)
    _write_weights(arch, config, dest / "model.safetensors")
    tokenizer.save(str(dest / "tokenizer.json"))
    _write_json(
        dest / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "model_max_length": 32768,
            "clean_up_tokenization_spaces": False,
            "chat_template": CHAT_TEMPLATE,
        },
    )


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_weights(arch: DummyArch, config: dict[str, object], path: Path) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from gateway.adapters.mlx.mlxlm import qwen2_model

    mx.random.seed(arch.seed)
    model = qwen2_model(config)
    model.set_dtype(getattr(mx, arch.dtype))
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    mx.save_safetensors(str(path), weights, metadata={"format": "mlx"})


def _train_tokenizer(arch: DummyArch):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=arch.vocab_size - len(MARKER_TOKENS),
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKER_TOKENS])
    return tokenizer


_WORDS = (
    "the a an and or but if then else when while for to of in on at by with from into over under "
    "file files line lines code test tests run runs build error errors fix change patch read write list "
    "function call calls tool tools result output input value values name names path paths command "
    "model models token tokens request response stream server client gateway user assistant system "
    "I you we it this that these those is are was be have has do does can will should would could "
    "first next last new old small large fast slow good bad done ready please thanks yes no ok"
).split()
_CODE = (
    "def return import from class self None True False async await yield lambda raise try except "
    "finally with as pass break continue print len range dict list str int float bool open json"
).split()
_SYLLABLES = "ka lo mi ne ru sa te vi zo ba de fi go hu ja ki lu ma no pe qu ri so tu".split()


def _corpus() -> list[str]:
    """Synthetic text: prose, code, JSON tool calls and chat markup (no external data).

    Its seed is fixed, so models differing only in `seed` share a tokenizer."""
    rng = random.Random(20240611)
    lines: list[str] = []
    for i in range(3000):
        kind = i % 5
        if kind == 0:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
            lines.append(" ".join(words).capitalize() + rng.choice(".?!:"))
        elif kind == 1:
            name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))
            args = ", ".join(rng.choice(_CODE + _WORDS) for _ in range(rng.randint(0, 3)))
            body = " ".join(rng.choice(_CODE) for _ in range(rng.randint(2, 6)))
            lines.append(f"def {name}({args}):\n    {body} = {rng.randint(0, 999)}")
        elif kind == 2:
            arguments = {rng.choice(_WORDS): rng.choice([*_WORDS, str(rng.randint(0, 99))]) for _ in range(2)}
            name = rng.choice(["exec_command", "read", "write", "get_weather"])
            call = json.dumps({"name": name, "arguments": arguments})
            lines.append(f"<tool_call>\n{call}\n</tool_call>")
        elif kind == 3:
            thought = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 10)))
            lines.append(f"<think>\n{thought}\n</think>\n\n")
        else:
            text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 8)))
            lines.append(f"<|im_start|>{rng.choice(['user', 'assistant', 'system'])}\n{text}<|im_end|>\n")
    return lines


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.adapters.mlx.dummy --cache-dir DIR [ARCH_JSON]`: build ahead of time, print the path."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gateway.adapters.mlx.dummy")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("arch", nargs="?", default="{}", help='architecture as JSON, e.g. \'{"layers": 4}\'')
    args = parser.parse_args(argv)
    arch = msgspec.json.decode(args.arch.encode(), type=DummyArch)
    print(ensure_dummy(arch, Path(args.cache_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
