"""Merge the trained adapter into the base weights and save safetensors with the trained tokenizer.

QLoRA adapters merge into the base *as it was trained against*: loaded in 4-bit, then every
quantised weight dequantised to the compute dtype. Never into 4-bit weights, and not into the
original full-precision weights (the adapter learned to correct the quantised ones). The merge is
checked: the merged model's logits against the adapter on the base it was trained with.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from factory.base import interrupt
from factory.request.config import Request


def _dequantized_base(request: Request, base_dir: Path):
    """The full-precision model class, holding the 4-bit base's weights dequantised to the compute dtype."""
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM

    from factory.train.train import compute_dtype, load_base

    dtype = compute_dtype(request)
    quantised = load_base(request, base_dir, for_training=False)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    target = dict(model.named_modules())
    with torch.no_grad():
        for name, module in quantised.named_modules():
            if isinstance(module, bnb.nn.Linear4bit):
                w = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
                target[name].weight.copy_(w.to(dtype).reshape(target[name].weight.shape))
    return model, quantised


def merge(request: Request, base_dir: Path, trained: Path, dest: Path, probe: list[list[int]] | None = None) -> dict:
    """Write the merged model + trained tokenizer into dest (a fresh folder).

    Returns the merge check: the largest |logit| difference between the merged model and the adapter
    on the base it was trained against, over the probe sequences."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.train.train import compute_dtype, load_base

    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    check: dict = {}
    tokenizer = AutoTokenizer.from_pretrained(trained)  # the trained one: the request's added tokens included
    if request.adapter is None:
        model = AutoModelForCausalLM.from_pretrained(trained, dtype=compute_dtype(request))
    else:
        from peft import PeftModel

        from factory.train.tokens import grow_embeddings

        if request.adapter == "qlora":
            base, trained_against = _dequantized_base(request, base_dir)
        else:
            base, trained_against = (AutoModelForCausalLM.from_pretrained(base_dir, dtype=compute_dtype(request)),
                                     load_base(request, base_dir, for_training=False))
        grow_embeddings(base, tokenizer)  # as in training

        grow_embeddings(trained_against, tokenizer)
        reference = PeftModel.from_pretrained(trained_against, trained).eval()
        model = PeftModel.from_pretrained(base, trained).merge_and_unload().eval()
        if probe:
            with torch.no_grad():
                diffs = [(model(input_ids=torch.tensor([ids])).logits.float()
                          - reference(input_ids=torch.tensor([ids])).logits.float()).abs().max().item() for ids in probe]
            check = {"max_abs_logit_diff": max(diffs), "probe_sequences": len(probe),
                     "probe_tokens": sum(map(len, probe)),
                     "against": "adapter on the 4-bit base" if request.adapter == "qlora" else
                     "adapter on the 8-bit base it was trained on" if request.load_in_8bit else "adapter on the base"}
        del reference, trained_against
    model.config.use_cache = True  # inference default for the published model
    with interrupt.partial(tmp):
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return check
