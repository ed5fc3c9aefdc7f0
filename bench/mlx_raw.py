"""In-process baselines for the MLX benchmarks: mlx-lm with no server in front.

Run by the benchmark scripts as a subprocess, with whichever venv's python is being
measured (it imports only mlx and mlx-lm, so it also runs in a peer's venv). Reads one
JSON job on stdin, prints one JSON result on stdout; with `--serve`, one job per line
(the model stays loaded, so runs can alternate with a server's). Streams run exactly as a
server would run them: greedy, EOS ends them (`probe` finds the prompts that run to the limit,
so every system generates the same tokens). The batch mode likewise runs without a processor.

    {"mode": "stream", "model": DIR, "prompts": [[messages], ...], "tokens": 256}
        -> {"runs": [{"prompt_tokens", "ttft", "decode_tps", "e2e_tps", "tokens", "text"}, ...]}
        (mlx_lm.stream_generate, one prompt after another, no logits processor: the work a server does)
    {"mode": "probe", "model": DIR, "prompts": [[messages], ...], "tokens": 256}
        -> {"tokens": [n, ...]}  (how many tokens greedy decoding yields for each prompt, up to the limit)
    {"mode": "batch", "model": DIR, "prompts": [[messages], ...], "tokens": 256, "rounds": [n, ...]}
        -> {"rounds": [{"n", "seconds", "tokens", "aggregate_tps"}, ...]}
        (mlx_lm's BatchGenerator with n sequences inserted at once, prompts taken in order; with "eos": true
        a sequence also ends at the tokenizer's EOS, as a server's does; each round also gives "counts", the
        tokens of each of its sequences in prompt order)
    {"mode": "prefill", "model": DIR, "before": [messages], "after": [messages], "answer": 16, "repeats": 3}
        -> {"new_tokens", "prefix_tokens", "prompt_tokens", "ttft": [...]}
        (a turn's ideal: what the previous turn left in the KV cache, i.e. its prompt `before` plus its
        greedy answer of `answer` tokens, cut to the prefix it shares with this turn's prompt `after`, is
        reused; the rest is computed; time to the first text, as a streaming client sees it)
    {"mode": "session", "model": DIR, "system": TEXT, "users": [TEXT, ...], "answer": 16}
        -> {"turns": [{"prompt_tokens", "prefix_tokens", "ttft", "tokens", "text"}, ...]}
        (a whole conversation, each turn's ideal: the system message, then per user turn the history so far
        rendered; what the previous turn left in the KV cache (its prompt and its greedy answer) is reused where
        this turn's prompt still matches it, the rest is computed, time to the first text; then the greedy answer
        of up to `answer` tokens (EOS ends it, `tokens` counts it without the EOS), whose text joins the history)
"""

from __future__ import annotations

import copy
import json
import sys
import time
from typing import Any


def main() -> None:
    loaded: dict[str, Any] = {}
    if sys.argv[1:] == ["--serve"]:  # one job per stdin line, one result per stdout line; the model stays loaded
        for line in sys.stdin:
            print(json.dumps(run(json.loads(line), loaded)), flush=True)
        return
    json.dump(run(json.load(sys.stdin), loaded), sys.stdout)


def run(job: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
    from mlx_lm import load

    if job["model"] not in loaded:
        loaded.clear()
        loaded[job["model"]] = load(job["model"])
    model, tokenizer = loaded[job["model"]]
    def render(messages: list[dict[str, Any]]) -> list[int]:
        # A conversation ending with the model's answer is history: no generation prompt after it.
        ask = messages[-1]["role"] != "assistant"
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=ask))

    mode = job["mode"]
    if mode == "stream":
        result = {"runs": [stream(model, tokenizer, render(m), job["tokens"]) for m in job["prompts"]]}
    elif mode == "probe":
        from mlx_lm import stream_generate

        result = {"tokens": [sum(1 for _ in stream_generate(model, tokenizer, render(m), max_tokens=job["tokens"]))
                             for m in job["prompts"]]}
    elif mode == "batch":
        prompts = [render(m) for m in job["prompts"]]
        stop = [[token] for token in tokenizer.eos_token_ids] if job.get("eos") else None
        result = {"rounds": [batch(model, prompts, n, job["tokens"], index, stop)
                             for index, n in enumerate(job["rounds"])]}
    elif mode == "prefill":
        before = render(job["before"])
        if job.get("answer"):  # the previous turn's own answer is in its cache too: generate it the same way
            from mlx_lm import stream_generate

            before += [r.token for r in stream_generate(model, tokenizer, before, max_tokens=job["answer"])]
        result = prefill(model, tokenizer, before, render(job["after"]), job.get("repeats", 3))
    elif mode == "session":
        result = {"turns": session(model, tokenizer, render, job["system"], job["users"], job["answer"])}
    else:
        raise SystemExit(f"unknown mode {mode}")
    return result


def stream(model: Any, tokenizer: Any, prompt: list[int], tokens: int) -> dict[str, Any]:
    from mlx_lm import stream_generate

    began = time.perf_counter()
    times, text, first_text = [], [], None
    for response in stream_generate(model, tokenizer, prompt, max_tokens=tokens):
        times.append(time.perf_counter())
        text.append(response.text)
        if first_text is None and response.text:
            first_text = times[-1]
    decode = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    # TTFT to the first *text*, as a streaming client sees it (a detokenizer may hold a token back).
    return {"prompt_tokens": len(prompt), "ttft": (first_text or times[0]) - began, "ttft_token": times[0] - began,
            "decode_tps": decode, "e2e_tps": len(times) / (times[-1] - began), "tokens": len(times),
            "text": "".join(text)}


def batch(model: Any, prompts: list[list[int]], n: int, tokens: int, index: int,
          stop: list[list[int]] | None = None) -> dict[str, Any]:
    from mlx_lm.generate import BatchGenerator

    start = (index * n) % max(1, len(prompts) - n + 1)
    chosen = prompts[start:start + n]
    ends = {"stop_tokens": stop} if stop else {}  # (mlx-lm 0.32's form: a list of token sequences)
    generator = BatchGenerator(model, completion_batch_size=max(8, n), prefill_batch_size=max(8, n), **ends)
    began = time.perf_counter()
    uids = generator.insert(chosen, max_tokens=[tokens] * n)
    counts = dict.fromkeys(uids, 0)
    produced, finished = 0, 0
    while finished < n:
        _, responses = generator.next()
        for response in responses:
            produced += 1
            finished += response.finish_reason is not None
            # The EOS that ends a sequence is not counted as one of its tokens.
            counts[response.uid] += response.finish_reason != "stop" or stop is None
    seconds = time.perf_counter() - began
    generator.close()
    return {"n": n, "seconds": seconds, "tokens": produced, "aggregate_tps": produced / seconds,
            "counts": [counts[uid] for uid in uids]}


def prefill(model: Any, tokenizer: Any, before: list[int], after: list[int], repeats: int) -> dict[str, Any]:
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.models.cache import make_prompt_cache

    shared = 0
    while shared < min(len(before), len(after) - 1) and before[shared] == after[shared]:
        shared += 1
    cache = make_prompt_cache(model)
    step = 512
    for begin in range(0, shared, step):  # untimed: the cache the previous turn would have left
        model(mx.array(after[begin:min(shared, begin + step)])[None], cache=cache)
        mx.eval([layer.state for layer in cache])
    times = []
    for _ in range(repeats + 1):
        warm = copy.deepcopy(cache)
        mx.eval([layer.state for layer in warm])
        began = time.perf_counter()
        # Until the first text, as a client sees it (a streaming detokenizer may hold a token back).
        for response in stream_generate(model, tokenizer, after[shared:], prompt_cache=warm, max_tokens=8):
            if response.text:
                break
        times.append(time.perf_counter() - began)
    return {"prefix_tokens": shared, "new_tokens": len(after) - shared, "prompt_tokens": len(after),
            "ttft": times[1:]}


def session(model: Any, tokenizer: Any, render: Any, system: str, users: list[str], answer: int
            ) -> list[dict[str, Any]]:
    from mlx_lm import stream_generate
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

    cache = make_prompt_cache(model)
    held: list[int] = []  # the tokens whose keys and values the cache holds, in order
    messages = [{"role": "system", "content": system}]
    turns = []
    for user in users:
        messages.append({"role": "user", "content": user})
        prompt = render(messages)
        shared = 0
        while shared < min(len(held), len(prompt) - 1) and held[shared] == prompt[shared]:
            shared += 1
        if len(held) > shared:  # untimed, as a server's cache lookup before the prefill
            trim_prompt_cache(cache, len(held) - shared)
        began = time.perf_counter()
        first, text, generated, stopped = None, [], [], False
        for response in stream_generate(model, tokenizer, prompt[shared:], prompt_cache=cache, max_tokens=answer):
            if first is None and response.text:
                first = time.perf_counter()  # the first text, as a streaming client sees it
            text.append(response.text)
            stopped = response.finish_reason == "stop"
            if not stopped:
                generated.append(response.token)
        known = prompt + generated
        offset = cache[0].offset
        if offset > len(known):  # an EOS fed back: not part of what the next turn can share
            trim_prompt_cache(cache, offset - len(known))
        held = known[:min(offset, len(known))]
        answer_text = "".join(text)
        turns.append({"prompt_tokens": len(prompt), "prefix_tokens": shared, "ttft": (first or began) - began,
                      "tokens": len(generated), "stopped": stopped, "text": answer_text})
        messages.append({"role": "assistant", "content": answer_text})
    return turns


if __name__ == "__main__":
    main()
