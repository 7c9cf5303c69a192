"""Axolotl's `special_tokens` and `tokens`: added to the tokenizer; the model's embeddings grow to match.

With an adapter, new tokens have no trained rows unless the embedding and output layers train in full:
they are added to LoRA's modules_to_save (saved with the adapter, merged into the model), and the card says so.
"""

from __future__ import annotations

from factory.request.config import Request


def load_tokenizer(request: Request, folder):
    """The base tokenizer with the request's tokens added (the same in the data and the train stage)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=request.trust_remote_code)
    add_tokens(tokenizer, request)
    return tokenizer


def add_tokens(tokenizer, request: Request) -> None:
    """Add the request's special tokens (bos/eos/pad/...: set, added when new) and tokens."""
    if request.special_tokens:
        tokenizer.add_special_tokens(dict(request.special_tokens))
    if request.tokens:
        tokenizer.add_tokens(list(request.tokens))


def grow_embeddings(model, tokenizer) -> list[str]:
    """Resize the embeddings when the tokenizer outgrew them; return the embedding and output layers' names
    (what an adapter must train in full so the new rows learn), or [] when nothing grew."""
    if len(tokenizer) <= model.get_input_embeddings().num_embeddings:
        return []
    model.resize_token_embeddings(len(tokenizer))
    layers = {model.get_input_embeddings(), model.get_output_embeddings()}
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if m in layers and name})


def cache_part(request: Request) -> dict | None:
    """What of the tokens decides the tokenisation (for the encoded-data cache key); None when none are added."""
    if not (request.special_tokens or request.tokens):
        return None
    return {"special_tokens": request.special_tokens or {}, "tokens": request.tokens or []}
