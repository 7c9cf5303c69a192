"""A GGUF file run in llama.cpp itself (llama-cpp-python): greedy tokens, perplexity, speed, its chat template.

The proof that an exported file works is llama.cpp answering, not a reader that parses it. These
functions take a path and token ids (the model's own tokenizer's), so the comparison with
transformers is on the same tokens.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def load(path: Path, n_ctx: int = 512, logits_all: bool = False, vocab_only: bool = False):
    """A llama_cpp.Llama on the file, on the CPU, quiet."""
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=logits_all,
                           vocab_only=vocab_only, n_threads=os.cpu_count() or 1, n_gpu_layers=0, seed=0,
                           verbose=False)


def last_logits(llm):
    """The logits of the last evaluated token, read from llama.cpp's context (llama-cpp-python keeps no copy of
    them unless logits_all=True, which costs n_ctx x vocabulary floats)."""
    import numpy as np

    return np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))


def greedy(llm, prompt_ids: list[int], max_new_tokens: int, stop_ids: set[int] = frozenset()) -> list[int]:
    """The argmax continuation, one token at a time (no sampler in between)."""
    import numpy as np

    llm.reset()
    llm.eval(list(prompt_ids))
    out: list[int] = []
    for _ in range(max_new_tokens):
        nxt = int(np.argmax(last_logits(llm)))
        out.append(nxt)
        if nxt in stop_ids:
            break
        llm.eval([nxt])
    return out


def perplexity(llm, texts_ids: list[list[int]]) -> dict:
    """exp(mean negative log-likelihood) of each next token over the texts (llm built with logits_all=True)."""
    import numpy as np

    nll, count = 0.0, 0
    for ids in texts_ids:
        ids = list(ids)[: llm.n_ctx()]
        if len(ids) < 2:
            continue
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nll -= float(logp[np.arange(len(ids) - 1), ids[1:]].sum())
        count += len(ids) - 1
    return {"perplexity": math.exp(nll / count) if count else None, "tokens": count}


def generation_speed(llm, prompt_ids: list[int], new_tokens: int = 64) -> dict:
    """Tokens per second of greedy decoding after the prompt (the prompt's own evaluation not counted)."""
    import numpy as np

    llm.reset()
    llm.eval(list(prompt_ids))
    t0 = time.perf_counter()
    for _ in range(new_tokens):
        llm.eval([int(np.argmax(last_logits(llm)))])
    seconds = time.perf_counter() - t0
    return {"tokens": new_tokens, "seconds": seconds, "tokens_per_s": new_tokens / seconds}


def tokenize(llm, text: str) -> list[int]:
    """llama.cpp's tokens for a text: special tokens parsed, no BOS added."""
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def chat_prompt(path: Path, messages: list[dict]) -> str:
    """The prompt llama-cpp-python renders from the file's own tokenizer.chat_template (as its chat API does)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = load(path, vocab_only=True)
    meta = llm.metadata
    template = meta.get("tokenizer.chat_template")
    if template is None:
        raise ValueError(f"{path.name} carries no tokenizer.chat_template")

    def token(key):
        i = meta.get(key)
        return llm._model.token_get_text(int(i)) if i is not None else ""

    fmt = Jinja2ChatFormatter(template=template, eos_token=token("tokenizer.ggml.eos_token_id"),
                              bos_token=token("tokenizer.ggml.bos_token_id"), add_generation_prompt=True)
    return fmt(messages=messages).prompt


def transformers_perplexity(model, texts_ids: list[list[int]], max_len: int = 512) -> dict:
    """The same figure for a transformers model (the merged model the file was made from, or a GGUF it dequantised)."""
    import torch

    nll, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for ids in texts_ids:
            ids = list(ids)[:max_len]
            if len(ids) < 2:
                continue
            x = torch.tensor([ids])
            logits = model(input_ids=x).logits[0, :-1].double()
            nll -= float(torch.log_softmax(logits, -1).gather(1, x[0, 1:, None]).sum())
            count += len(ids) - 1
    return {"perplexity": math.exp(nll / count) if count else None, "tokens": count}
