"""QLoRA on the CPU: gradients on the 4-bit base equal those on its dequantised weights (also after an
eval pass, the avx512_bf16 repack gotcha), and a QLoRA run merges into the dequantised base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import missing  # tests/ is on sys.path under pytest
import torch

from factory.request.config import parse_request

try:
    import bitsandbytes as bnb
except ImportError:
    bnb = None


@pytest.fixture(autouse=True)
def _bitsandbytes():
    if bnb is None:
        missing("bitsandbytes is not installed (it is in the dev extras; QLoRA needs it)", "FACTORY_REQUIRE_EXTRAS")


def _request(tiny_base, **over):
    return parse_request({"base_model": str(tiny_base), "datasets": [{"path": "o/d"}], "adapter": "qlora",
                          "load_in_4bit": True, "lora_target_linear": True, "bf16": False, **over})


def _lora_grads(model) -> dict[str, torch.Tensor]:
    return {n.replace(".default", ""): p.grad.detach().clone() for n, p in model.named_parameters()
            if "lora_" in n and p.grad is not None}


def _step_grads(tiny_base, tiny_tokenizer, fix: bool) -> tuple[dict, dict]:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from factory.train.merge import _dequantized_base
    from factory.train.train import load_base, wrap_adapter

    req = _request(tiny_base)
    torch.manual_seed(0)
    quant = wrap_adapter(req, load_base(req, tiny_base))
    if not fix:  # undo the factory's fix, to show the test catches the bug it guards against
        for m in quant.modules():
            if isinstance(m, bnb.nn.Linear4bit):
                m.support_avx512bf16_for_cpu = True
    with torch.no_grad():  # LoRA B starts at zero; give it values so A's gradients are not all zero too
        for n, p in quant.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    reference = wrap_adapter(req, _dequantized_base(req, tiny_base)[0])
    set_peft_model_state_dict(reference, get_peft_model_state_dict(quant))
    ids = torch.tensor([tiny_tokenizer("Is this review positive or negative? a great song about rain")["input_ids"]])

    quant.eval()
    with torch.no_grad():
        quant(input_ids=ids)  # an evaluation pass first: this is what repacks the 4-bit weights on avx512_bf16
    quant.train()
    reference.train()
    for model in (quant, reference):
        model(input_ids=ids, labels=ids).loss.backward()
    return _lora_grads(quant), _lora_grads(reference)


def _rel_error(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and len(a) > 0
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp(min=1e-12)).item() for k in a)


def test_qlora_gradients_match_the_dequantised_model_after_eval(tiny_base, tiny_tokenizer):
    quant, reference = _step_grads(tiny_base, tiny_tokenizer, fix=True)
    assert _rel_error(quant, reference) < 1e-4


def test_without_the_fix_this_cpu_gets_wrong_gradients(tiny_base, tiny_tokenizer):
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "avx512_bf16" not in flags:
        pytest.skip("this CPU has no avx512_bf16: the repack gotcha does not occur here")
    quant, reference = _step_grads(tiny_base, tiny_tokenizer, fix=False)
    assert _rel_error(quant, reference) > 1e-2


def test_qlora_run_merges_into_the_dequantised_base(home, tiny_base, tmp_path):
    import yaml

    from factory.cli.main import main

    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": f"song {i} about rain and music"}) + "\n"
                                              for i in range(30)))
    req = tmp_path / "q.yaml"
    req.write_text(yaml.safe_dump({"base_model": str(tiny_base), "datasets": [{"path": "d.jsonl", "type": "completion"}],
                                   "adapter": "qlora", "load_in_4bit": True, "lora_target_linear": True,
                                   "sequence_len": 64, "max_steps": 3, "learning_rate": 1e-2, "bf16": False,
                                   "hub_model_id": "me/qlora-tiny", "val_set_size": 4}))
    assert main(["run", str(req)]) == 0
    run = next((home / "runs").iterdir())
    check = json.loads((run / "stages" / "merge.json").read_text())["check"]
    assert check["against"] == "adapter on the 4-bit base" and check["max_abs_logit_diff"] < 1e-3
    card = (run / "README.md").read_text()
    assert "into the 4-bit base dequantised to the compute dtype" in card
    from safetensors.torch import load_file

    weights = load_file(str(run / "merged" / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in weights.values())  # plain weights, nothing 4-bit
    assert "quantization_config" not in json.loads((run / "merged" / "config.json").read_text())
