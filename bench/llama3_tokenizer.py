"""A real production vocabulary for the grammar benchmarks: Llama 3's tokenizer (128,000 BPE ranks and 256 special
tokens), as Meta ships it inside the `llama_models` wheel on PyPI, converted to a Hugging Face tokenizer directory.

The dummy models' tokenizers are trained on a small synthetic corpus (about 2,000 tokens); how fast a grammar
engine masks depends on the vocabulary, so the engines are also measured on a real one. The conversion is
transformers' own tiktoken converter; the result is checked to encode sample texts to exactly tiktoken's ids.

Run by bench/install_peers.sh with the peers' python (it has transformers; tiktoken is installed next to it):

    DIR/venv-vmlx/bin/python bench/llama3_tokenizer.py WHEEL OUT_DIR
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

MODEL_FILE = "llama_models/llama3/tokenizer.model"
# Llama 3's pre-tokenizer pattern and special tokens, as llama_models/llama3/tokenizer.py defines them.
PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
           r"\s*[\r\n]+|\s+(?!\S)|\s+")
NAMED = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
         "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
         "<|eot_id|>", "<|python_tag|>", "<|image|>"]
SPECIAL = NAMED + [f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(NAMED))]
SAMPLES = ["def main():\n    print(\"hello, world\")\n", '{"path": "src/app.py", "line": 42}',
           "*** Begin Patch\n*** Update File: a.py\n@@\n-x = 1\n+x = 2\n*** End Patch", "Grüße, 東京 🚀 ok?"]


def convert(wheel: Path, out: Path) -> int:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as archive:
        model = Path(archive.extract(MODEL_FILE, tmp))
        ranks = load_tiktoken_bpe(str(model))
        converted = TikTokenConverter(vocab_file=str(model), pattern=PATTERN, extra_special_tokens=SPECIAL).converted()
    hf = PreTrainedTokenizerFast(tokenizer_object=converted, bos_token="<|begin_of_text|>",
                                 eos_token="<|eot_id|>")
    reference = tiktoken.Encoding("llama3", pat_str=PATTERN, mergeable_ranks=ranks,
                                  special_tokens={t: len(ranks) + i for i, t in enumerate(SPECIAL)})
    for text in SAMPLES:
        ours, theirs = hf.encode(text, add_special_tokens=False), reference.encode(text)
        if ours != theirs:
            raise SystemExit(f"conversion differs from tiktoken on {text!r}: {ours} != {theirs}")
    if hf.convert_tokens_to_ids("<|eot_id|>") != len(ranks) + NAMED.index("<|eot_id|>"):
        raise SystemExit("special token ids are not Llama 3's")
    hf.save_pretrained(str(out))
    return len(hf)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    size = convert(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"llama3 tokenizer: {size} tokens in {sys.argv[2]}")


if __name__ == "__main__":
    main()
