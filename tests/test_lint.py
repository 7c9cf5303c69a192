"""Each lint rule fires on the request it is about, and stays quiet on a sensible one."""

from __future__ import annotations

import pytest

from factory.cli.main import main
from factory.request.config import parse_request
from factory.admission.lint import RULES, Facts, lint

BASE = {"base_model": "o/b", "datasets": [{"path": "o/d"}], "adapter": "lora", "lora_target_linear": True,
        "learning_rate": 2e-4, "warmup_ratio": 0.03, "hub_model_id": "o/out"}
FACTS = Facts(model_type="llama", max_positions=4096, has_chat_template=True, train_rows=10_000)

CASES = {
    "kernels-need-cuda": ({"liger_rms_norm": True}, FACTS),
    "parallelism-not-available": ({"context_parallel_size": 2}, FACTS),
    "tracker-unavailable": ({"mlflow_tracking_uri": "./mlruns"}, FACTS),  # not installed, or MLflow 3's refused folder store
    "cce-not-applied": ({"cut_cross_entropy": True, "sample_packing": False}, FACTS),  # packed rows only, on any machine
    "seq-len-beyond-positions": ({"sequence_len": 8192}, FACTS),
    "chat-template-missing": ({}, Facts(has_chat_template=False)),
    "lora-lr-too-low": ({"learning_rate": 1e-5}, FACTS),
    "full-lr-too-high": ({"adapter": None, "lora_target_linear": False}, FACTS),
    "packing-no-isolation": ({}, Facts(model_type="gpt2")),
    "packing-eager-attention": ({"attn_implementation": "eager"}, FACTS),
    "eval-split-too-small": ({"val_set_size": 0.001}, FACTS),
    "batch-larger-than-data": ({"micro_batch_size": 16, "gradient_accumulation_steps": 256}, FACTS),
    "lora-alpha-ratio": ({"lora_r": 64, "lora_alpha": 8}, FACTS),
    "lora-settings-without-adapter": ({"adapter": None, "learning_rate": 1e-5}, FACTS),
    "no-warmup-high-lr": ({"warmup_ratio": 0.0}, FACTS),
    "train-on-inputs-chat": ({"train_on_inputs": True}, FACTS),
    "max-steps-overrides-epochs": ({"max_steps": 100, "num_epochs": 3}, FACTS),
    "no-hub-model-id": ({"hub_model_id": None}, FACTS),
    "qlora-gradient-checkpointing": ({"adapter": "qlora", "load_in_4bit": True}, FACTS),
    "preference-full-high-lr": ({"rl": "dpo", "datasets": [{"path": "o/d", "type": "preference"}], "adapter": None,
                                 "lora_target_linear": False, "learning_rate": 1e-4}, FACTS),
    "preference-nothing-held-out": ({"rl": "dpo", "datasets": [{"path": "o/d", "type": "preference"}],
                                     "val_set_size": 0}, FACTS),
    "sample-packing-ignored-for-pairs": ({"rl": "orpo", "datasets": [{"path": "o/d", "type": "preference"}],
                                          "sample_packing": False}, FACTS),
    "gguf-architecture": ({"export": {"gguf": ["q8_0"]}}, Facts(config={"architectures": ["GPT2LMHeadModel"]})),
}
MACHINE_CASES = {"gguf-engine"}  # about this machine, not the request: test_gguf_engine_rule


def test_gguf_engine_rule(monkeypatch):
    monkeypatch.setattr("factory.publish.gguf_export.llama_cpp_available", lambda: False)
    found = {f.rule: f for f in lint(parse_request({**BASE, "export": {"gguf": ["q8_0", "q4_k_m"]}}), FACTS)}
    assert found["gguf-engine"].severity == "error" and "q4_k_m" in found["gguf-engine"].message
    assert "gguf-engine" not in {f.rule for f in lint(parse_request({**BASE, "export": {"gguf": ["q8_0"]}}), FACTS)}


def test_sensible_request_is_clean():
    assert lint(parse_request(BASE), FACTS) == []
    dpo = {**BASE, "rl": "dpo", "datasets": [{"path": "o/d", "type": "preference"}], "learning_rate": 5e-5}
    assert lint(parse_request(dpo), FACTS) == []


def test_every_rule_has_a_case():
    assert {r.id for r in RULES} == set(CASES) | MACHINE_CASES
    assert len(RULES) >= 10


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires(rule_id):
    change, facts = CASES[rule_id]
    findings = lint(parse_request({**BASE, **change}), facts)
    assert rule_id in {f.rule for f in findings}, findings


def test_lint_list_prints_reasons(capsys):
    assert main(["lint", "--list"]) == 0
    out = capsys.readouterr().out
    for rule in RULES:
        assert rule.id in out and rule.reason in out
