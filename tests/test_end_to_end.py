"""Whole runs through train -> merge -> eval -> card -> publish, on the CPU, on tiny models built in code."""

from __future__ import annotations

import json

import yaml

from factory.cli.main import main
from factory.hub.local import LocalHub


def test_demo_beats_base_and_publishes(home, capsys, monkeypatch):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "factory_demo_heldout" in out and "time per stage" in out
    assert "its\n0.000 is guaranteed" in out and "make demo-real" in out  # the demo says what it shows
    run = next((home / "runs").iterdir())
    scores = json.loads((run / "eval.json").read_text())["factory_demo_heldout"]
    assert scores["finetuned"]["n"] == scores["base"]["n"] == 200
    assert scores["finetuned"]["value"] - scores["base"]["value"] >= 0.40, scores

    merged = run / "merged"
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()
    card = (merged / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "factory/tiny-llama" and meta["base_model_relation"] == "finetune"
    assert meta["datasets"] == ["factory/demo-instructions"] and meta["license"] == "apache-2.0"
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    result = meta["model-index"][0]["results"][0]
    assert result["metrics"][0]["value"] == round(scores["finetuned"]["value"], 4)
    assert "## The request" in card and "lora_r: 32" in card and str(home) not in card

    published = json.loads((run / "published.json").read_text())
    hub = LocalHub(home / "hub")
    path, rev = hub.snapshot("factory/tiny-llama-demo-instruct")
    assert rev == published["revision"] and (path / "README.md").read_text() == card
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all("tokens_per_s" in m and "packing_efficiency" in m for m in metrics)
    assert list((run / "checkpoints").glob("checkpoint-*"))

    # the same request again: every stage is skipped, and publishing makes no new revision
    assert main(["demo"]) == 0
    assert "already done" in capsys.readouterr().err
    assert hub.snapshot("factory/tiny-llama-demo-instruct")[1] == rev

    # the vibe check through the chat engine: held-out questions the finetuned model gets right and its base wrong
    from factory.frontdoor.chat_engine import ChatEngine, Settings

    heldout = [json.loads(line) for line in (home / "evals" / "factory_demo_heldout.jsonl").read_text().splitlines()][:10]
    engine = ChatEngine(device="cpu")
    greedy = Settings(temperature=0, max_new_tokens=8)

    def right(model, item):
        return engine.generate(model, [{"role": "user", "content": item["question"]}], greedy).strip() == item["answer"]

    won = [item for item in heldout if right("factory/tiny-llama-demo-instruct", item) and not right("factory/tiny-llama", item)]
    assert len(won) >= 8, won

    # and in a terminal: `factory chat MODEL --base auto`, both models answering each prompt
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(f"{heldout[0]['question']}\n/system be brief\n/reset\n/quit\n"))
    assert main(["chat", "factory/tiny-llama-demo-instruct", "--base", "auto", "--temperature", "0",
                 "--max-new-tokens", "8"]) == 0
    chat = capsys.readouterr()
    assert f"model> {heldout[0]['answer']}" in chat.out and "base> " in chat.out
    assert "factory/tiny-llama)" in chat.err and "conversation reset; system: be brief" in chat.err


def test_full_finetune_of_local_completion_data(home, tiny_base, tmp_path, capsys):
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": f"document number {i} about music and rain"}) + "\n" for i in range(40)))
    req = tmp_path / "full.yaml"
    req.write_text(yaml.safe_dump({
        "base_model": str(tiny_base), "datasets": [{"path": "docs.jsonl", "type": "completion"}],
        "sequence_len": 64, "max_steps": 4, "learning_rate": 1e-5, "hub_model_id": "me/full-tiny",
        "val_set_size": 0.1, "excess_length_strategy": "truncate",
    }))
    assert main(["run", str(req)]) == 0
    run = next((home / "runs").iterdir())
    stages = {p.stem for p in (run / "stages").iterdir()}
    assert stages == {"resolve", "data", "train", "merge", "eval", "export", "card", "publish"}
    meta = yaml.safe_load((run / "README.md").read_text().split("---")[1])
    assert "datasets" not in meta  # local files are never named as Hub datasets
    assert str(tmp_path) not in (run / "README.md").read_text()
    assert (run / "model" / "model.safetensors").is_file()
    assert LocalHub(home / "hub").exists("me/full-tiny")


def test_packed_and_unpacked_training_end_within_two_percent(home, tiny_base, tmp_path):
    """Same data, seed and epochs: packing changes how rows are batched, not what is learned."""
    from factory.request.config import parse_request
    from factory.hub.local import LocalHub
    from factory.run.pipeline import Run, execute
    from factory.base.progress import Silent

    import random

    rng = random.Random(0)
    data = tmp_path / "songs.jsonl"
    words = ["rain", "music", "city", "night", "river", "song", "light", "road"]
    data.write_text("".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(4, 20)))}) + "\n"
                            for _ in range(600)))
    losses = {}
    for packing in (True, False):
        req = parse_request({
            "base_model": str(tiny_base), "datasets": [{"path": str(data), "type": "completion"}],
            "sequence_len": 128, "sample_packing": packing, "micro_batch_size": 1 if packing else 6,
            "num_epochs": 3, "learning_rate": 3e-3, "val_set_size": 24, "seed": 7, "bf16": False,
            "lr_scheduler": "constant", "publish": {"enabled": False},
        })
        run = Run(request=req, hub=LocalHub(home / "hub"), reporter=Silent(), dir=tmp_path / f"packing-{packing}")
        losses[packing] = execute(run, stop_after="train")["train"]["eval_loss"]
    assert abs(losses[True] - losses[False]) / losses[False] <= 0.02, losses
