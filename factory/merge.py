"""Merge the trained adapter into the base weights and save safetensors with the trained tokenizer.

QLoRA adapters merge into the base loaded in the compute dtype, never into 4-bit weights.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from factory.config import Request


def merge(request: Request, base_dir: Path, trained: Path, dest: Path) -> None:
    """Write the merged model + trained tokenizer into dest (a fresh folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.train import compute_dtype

    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if request.adapter is None:
        model = AutoModelForCausalLM.from_pretrained(trained, dtype=compute_dtype(request))
    else:
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=compute_dtype(request))
        model = PeftModel.from_pretrained(base, trained).merge_and_unload()
    model.config.use_cache = True  # inference default for the published model
    model.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(trained).save_pretrained(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
