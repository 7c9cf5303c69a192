"""A Hugging Face tokenizer as GGUF metadata: tokens, their types, merges or scores, specials, chat template.

Two tokenizer families cover the architectures the factory exports: byte-level BPE (GPT-2 style:
SmolLM2, Qwen2/2.5, Llama 3) and SentencePiece-style BPE with byte fallback (Llama 2, Mistral).
llama.cpp re-implements each byte-level pre-tokenizer by name (`tokenizer.ggml.pre`); llama.cpp's
own converter finds that name from a hash of one model's token ids, which fails for any tokenizer it
has not seen (the factory's tiny base, a retrained vocabulary). Here the name comes from the
pre-tokenizer itself, compared with the regexes llama.cpp implements, and an unknown one is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from factory.base.errors import UserError

# The split regex of each byte-level pre-tokenizer llama.cpp implements, as tokenizer.json writes it.
SPLIT_REGEX = {
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


def tokenizer_json(model_dir: Path) -> dict:
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{model_dir}: no tokenizer.json; GGUF export needs a fast (tokenizers) tokenizer")
    return json.loads(path.read_text(encoding="utf-8"))


def tokenizer_kind(tok: dict) -> tuple[str, str]:
    """(llama.cpp tokenizer model, pre-tokenizer name) for a tokenizer.json, or a UserError naming what is unknown."""
    model = tok.get("model") or {}
    if model.get("type") != "BPE":
        raise UserError(f"GGUF export: a {model.get('type')} tokenizer is not supported (byte-level BPE, as in "
                        "SmolLM2/Qwen2/Llama 3, or SentencePiece-style BPE with byte fallback, as in Llama 2/Mistral)")
    if model.get("byte_fallback"):
        return "llama", "default"
    pre = pre_tokenizer_name(tok.get("pre_tokenizer"))
    if pre is None:
        raise UserError("GGUF export: this tokenizer's pre-tokenizer is not one llama.cpp implements by name "
                        f"({json.dumps(tok.get('pre_tokenizer'))[:200]}); llama.cpp would split text differently "
                        "from transformers, so the file is not written")
    return "gpt2", pre


def pre_tokenizer_name(pre: dict | None) -> str | None:
    if not isinstance(pre, dict):
        return None
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"  # one token per digit, then GPT-2's regex: SmolLM's (and the tiny demo base's) split
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = (steps[0].get("pattern") or {}).get("Regex")
        return next((name for name, rx in SPLIT_REGEX.items() if rx == pattern), None)
    return None


def add_vocab(writer, model_dir: Path, vocab_size: int, chat_template: str | None) -> dict:
    """Write the tokenizer into a GGUFWriter; returns what was written (for the card and the tests)."""
    import gguf
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    tok_json = tokenizer_json(model_dir)
    kind, pre = tokenizer_kind(tok_json)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if kind == "llama":
        vocab = gguf.LlamaHfVocab(model_dir)
        ranks = merge_scores(tok_json)
        tokens, scores, types = [], [], []
        for i, (text, _, toktype) in enumerate(vocab.all_tokens()):
            tokens.append(text)
            scores.append(ranks.get(text.decode("utf-8", errors="replace"), 0.0))
            types.append(toktype)
        for i in range(len(tokens), vocab_size):  # rows the embedding has beyond the tokenizer
            tokens.append(f"[PAD{i}]".encode())
            scores.append(-1000.0)
            types.append(gguf.TokenType.UNUSED)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
    else:
        tokens, types = byte_level_tokens(tokenizer, vocab_size)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=kind == "gpt2", n_vocab=vocab_size)
    special.chat_template = chat_template  # the tokenizer's own, as transformers loaded it (or none)
    special.add_to_gguf(writer, quiet=True)
    return {"tokenizer": kind, "pre": pre, "tokens": len(tokens), "chat_template": chat_template is not None}


def merge_scores(tok: dict) -> dict[str, float]:
    """SentencePiece-style scores from the BPE merges: the token the r-th merge makes scores -r.

    llama.cpp's SPM tokenizer merges the adjacent pair whose joined text scores highest, so these scores
    make it merge in transformers' order (gguf's LlamaHfVocab gives every token -1000, and then
    llama.cpp splits "  y" differently from transformers)."""
    scores: dict[str, float] = {}
    for rank, merge in enumerate(tok["model"].get("merges") or []):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        scores.setdefault(a + b, -float(rank))
    return scores


def byte_level_tokens(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every id's token text and type, as llama.cpp's converter writes them (added tokens: control or user)."""
    import gguf

    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types
