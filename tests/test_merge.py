"""The merged model's logits equal the adapter model's, and it ships the trained tokenizer."""

from __future__ import annotations

import torch

from factory.request.config import parse_request
from factory.train.merge import merge


def test_merged_logits_equal_adapter_logits(tiny_base, tiny_tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    req = parse_request({"base_model": str(tiny_base), "datasets": [{"path": "o/d"}], "adapter": "lora",
                         "lora_target_linear": True, "lora_modules_to_save": ["lm_head"]})
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                 modules_to_save=["lm_head"], init_lora_weights=False))
    with torch.no_grad():  # make the saved head differ from the base's, as after training
        peft_model.base_model.model.lm_head.modules_to_save["default"].weight.add_(0.05)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    trained_tok = AutoTokenizer.from_pretrained(tiny_base)
    trained_tok.chat_template = "{{ 'trained template' }}"
    trained_tok.save_pretrained(adapter)

    merge(req, tiny_base, adapter, tmp_path / "merged")

    ids = torch.tensor([tiny_tokenizer("Is this review positive or negative? great song")["input_ids"]])
    peft_model.eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_base).eval()(input_ids=ids).logits
    assert (got - want).abs().max() < 1e-4
    assert (plain - want).abs().max() > 1e-2  # the adapter really changed the model
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert AutoTokenizer.from_pretrained(tmp_path / "merged").chat_template == "{{ 'trained template' }}"
