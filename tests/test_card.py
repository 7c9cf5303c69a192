"""The model card for a realistic run: every metadata field and every section, parsed back."""

from __future__ import annotations

import yaml

from factory.publish.card import CardFacts, build_card
from factory.request.config import parse_request


def _facts(**over) -> CardFacts:
    data = {"rows": 1200, "malformed": 12, "duplicates": 8, "train_samples": 1150, "eval_samples": 24,
            "dropped": 5, "truncated": 1,
            "datasets": [{"source": "org/support-chats", "rows": 1000, "used": 984, "malformed": 10, "duplicates": 6,
                          "revision": "0123456789abcdef" * 2 + "01234567"},
                         {"source": "extra.jsonl", "rows": 200, "used": 196, "malformed": 2, "duplicates": 2}],
            "contamination": {"policy": "drop", "rows_flagged": 4, "rows_dropped": 4,
                              "benchmarks": {"gsm8k": {"items": 1319, "contaminated": 3, "rate": 0.002274,
                                                       "by_method": {"ngram": 3, "substring": 2, "embedding": 0}}}}}
    train = {"steps": 300, "seconds": 1234.5, "train_loss": 0.91, "eval_loss": 1.02, "tokens": 1_500_000,
             "tokens_seen": 3_000_000, "packing_efficiency": 0.987, "hardware": "1x NVIDIA H100 80GB HBM3"}
    scores = {"arc_easy": {"base": {"metric": "acc", "value": 0.61, "stderr": 0.02, "n": 500},
                           "finetuned": {"metric": "acc", "value": 0.66, "stderr": 0.021, "n": 500}}}
    base = dict(base_license="apache-2.0", base_language=["en", "fr"], base_revision="a" * 40, data=data, train=train,
                scores=scores, versions={"factory": "0.1.0", "transformers": "5.24.0"},
                merge_check={"max_abs_logit_diff": 3.1e-5, "probe_tokens": 812, "against": "adapter on the 4-bit base"},
                loss_image="loss.svg")
    return CardFacts(**{**base, **over})


def _request(**over):
    return parse_request({"base_model": "Qwen/Qwen2.5-1.5B", "hub_model_id": "me/qwen-support",
                          "datasets": [{"path": "org/support-chats", "type": "sharegpt"},
                                       {"path": "/home/me/data/extra.jsonl", "type": "alpaca"}],
                          "adapter": "qlora", "load_in_4bit": True, "lora_target_linear": True, "num_epochs": 2,
                          "evals": {"tasks": ["arc_easy"], "limit": 500},
                          "contamination": {"benchmarks": ["gsm8k"], "policy": "drop"}, **over})


def test_card_metadata_and_sections():
    text = build_card(_request(), _facts())
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["base_model"] == "Qwen/Qwen2.5-1.5B" and meta["base_model_relation"] == "finetune"
    assert meta["datasets"] == ["org/support-chats"]  # Hub ids only; the local file is not named
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en", "fr"]
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert {"factory", "qlora", "packing"} <= set(meta["tags"])
    result = meta["model-index"][0]["results"][0]
    assert result["metrics"][0] == {"type": "acc", "value": 0.66, "name": "acc (500 items)"}
    for section in ("## How to use", "## Evaluation", "## Training data", "## Benchmark contamination",
                    "## Training procedure", "## Limitations", "## The request", "## Framework versions"):
        assert section in text, section
    assert "apply_chat_template" in text and "AutoModelForCausalLM" in text
    assert "| arc_easy | acc | 500 | 0.610 ± 0.020 | 0.660 ± 0.021 | +0.050 |" in text
    assert "| `org/support-chats` | `0123456789ab` | sharegpt | 1000 | 984 | 10 | 6 |" in text
    assert "| a local file | - | alpaca | 200 |" in text
    assert "| gsm8k | 1319 | 3 | 0.23% | 3 | 2 |" in text and "dropped before training (4 rows)" in text
    assert "real tokens trained: 3,000,000" in text and "packing efficiency: 98.7%" in text
    assert "1x NVIDIA H100" in text and "into the 4-bit base dequantised" in text and "3.10e-05" in text
    assert "![Training loss](loss.svg)" in text and f"revision `{'a' * 40}`" in text
    assert "<details>" in text and "lora_target_linear: true" in text
    assert "/home/me" not in text and "extra.jsonl" in text  # local paths reduced to file names
    assert "seeded random subset of at most 500 items" in text


def test_no_license_is_other_with_a_note_and_adapter_cards_are_peft():
    text = build_card(_request(), _facts(base_license=None, base_language=None))
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["license"] == "other" and "names no license" in text and "language" not in meta
    adapter = yaml.safe_load(build_card(_request(publish={"adapter": True}), _facts()).split("---")[1])
    assert adapter["library_name"] == "peft" and adapter["base_model_relation"] == "adapter"


def test_a_local_base_folder_is_never_named(tmp_path, tiny_base):
    text = build_card(_request(base_model=str(tiny_base)), _facts())
    meta = yaml.safe_load(text.split("---")[1])
    assert "base_model" not in meta and str(tiny_base) not in text and "a local model folder" in text


def test_local_folders_and_tracking_uris_stay_out_of_the_card(tmp_path):
    text = build_card(_request(adapter="lora", load_in_4bit=False, lora_model_dir="/srv/me/adapters/a1",
                               dataset_prepared_path="/srv/me/prepared", resume_from_checkpoint="/srv/me/ck/checkpoint-9",
                               mlflow_tracking_uri="https://user:secret@mlflow.example.com"), _facts())
    assert "/srv/me" not in text and "secret" not in text
    assert "lora_model_dir: a1" in text and "resume_from_checkpoint: checkpoint-9" in text


def test_loss_curve_svg(tmp_path):
    import json
    import xml.etree.ElementTree as ET

    from factory.publish import loss_curve

    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 5.0 / s} for s in range(1, 21)] + [{"step": 10, "loss": 0.3}]  # a resumed run rewrites step 10
    rows.append({"step": 20, "eval_loss": 0.4})
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert loss_curve.write(metrics, tmp_path / "loss.svg")
    svg = ET.parse(tmp_path / "loss.svg").getroot()
    lines = [e for e in svg.iter() if e.tag.endswith("polyline")]
    assert [len(e.get("points").split()) for e in lines] == [20, 1]  # train (one point per step), eval
    assert not loss_curve.write(tmp_path / "missing.jsonl", tmp_path / "none.svg")
