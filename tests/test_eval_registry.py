"""The registry's benchmarks as offline lm-eval tasks: every item normalised, seeded subsets, real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.benchmarks import BUILTIN, read_items
from evals.registry_tasks import GENERATION, write_task


@pytest.fixture
def bench_dir(shared, monkeypatch):
    monkeypatch.setenv("FACTORY_BENCHMARKS_DIR", str(shared / "benchmarks"))
    return shared / "benchmarks"


def test_every_builtin_becomes_a_task(bench_dir, tmp_path):
    expected = {"gsm8k": 1319, "mmlu": 3022, "arc_easy": 2376, "arc_challenge": 1172, "truthfulqa": 790,
                "winogrande": 1267, "hellaswag": 4}
    for name in BUILTIN:
        assert write_task(name, tmp_path) == expected[name], name
        rows = [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        if name in GENERATION:
            assert all(r["target"].lstrip("-").replace(".", "").isdigit() for r in rows)
        else:
            assert all(0 <= r["gold"] < len(r["choices"]) and len(r["choices"]) >= 2 for r in rows), name
    truthful = read_items(bench_dir / "truthfulqa" / "TruthfulQA.csv")[0]
    first = json.loads((tmp_path / "truthfulqa.jsonl").read_text().splitlines()[0])
    assert first["choices"][first["gold"]] == truthful["Best Answer"]
    gsm = json.loads((tmp_path / "gsm8k.jsonl").read_text().splitlines()[0])
    assert gsm["target"] == "18"  # "... #### 18"
    wino = json.loads((tmp_path / "winogrande.jsonl").read_text().splitlines()[0])
    assert wino["choices"][1].endswith("so Maria always got the easier cases.") and wino["gold"] == 1


def test_registry_tasks_run_in_process_on_seeded_subsets(bench_dir, tiny_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evals.harness import evaluate

    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    tok = AutoTokenizer.from_pretrained(tiny_base)
    tasks = ["arc_easy", "mmlu", "truthfulqa", "winogrande", "hellaswag", "gsm8k"]
    first = evaluate(model, tok, tasks, limit=6, seed=3, max_new_tokens=8)
    again = evaluate(model, tok, tasks, limit=6, seed=3, max_new_tokens=8)
    for name in tasks:
        s = first[name]
        assert s.n == (4 if name == "hellaswag" else 6), (name, s)
        assert 0.0 <= s.value <= 1.0 and s.stderr is not None
        assert s.metric == ("exact_match" if name == "gsm8k" else "acc")
        assert again[name].value == s.value  # the same seeded items, the same model
    # the subset is a seeded random sample of the task's documents, not its first N
    import random
    import tempfile

    from evals.registry_tasks import write_task

    with tempfile.TemporaryDirectory() as tmp:
        for name in tasks:
            docs = write_task(name, Path(tmp))
            want = tuple(sorted(random.Random(3).sample(range(docs), min(6, docs))))
            assert first[name].doc_ids == want, name
            if docs > 6:
                assert want != tuple(range(6)), name
    # a different model (the finetuned one, in a run) is scored on exactly the same items
    import torch

    torch.manual_seed(1)
    other = AutoModelForCausalLM.from_config(model.config)
    scored = evaluate(other, tok, tasks, limit=6, seed=3, max_new_tokens=8)
    assert {n: scored[n].doc_ids for n in tasks} == {n: first[n].doc_ids for n in tasks}
    assert evaluate(model, tok, ["arc_easy"], limit=6, seed=4, max_new_tokens=8)["arc_easy"].doc_ids != first["arc_easy"].doc_ids


def test_registry_task_without_data_is_refused_at_the_door(home, tiny_base, tmp_path, monkeypatch, capsys):
    import yaml

    from factory.cli.main import main

    monkeypatch.delenv("FACTORY_BENCHMARKS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "hello there"}) + "\n")
    req = tmp_path / "r.yaml"
    req.write_text(yaml.safe_dump({"base_model": str(tiny_base), "datasets": [{"path": "d.jsonl", "type": "completion"}],
                                   "evals": {"tasks": ["gsm8k"]}}))
    assert main(["validate", str(req)]) == 2
    assert "FACTORY_BENCHMARKS_DIR" in capsys.readouterr().err


def test_factory_eval_command(bench_dir, tiny_base, tmp_path, home, capsys):
    from factory.cli.main import main

    out = tmp_path / "eval.json"
    assert main(["eval", str(tiny_base), "--base", str(tiny_base), "--task", "arc_easy", "--limit", "5",
                 "--json", str(out)]) == 0
    scores = json.loads(out.read_text())["arc_easy"]
    assert scores["model"] == scores["base"] and scores["model"]["n"] == 5
    assert "+0.000" in capsys.readouterr().out  # the same model on the same items: no delta
    assert main(["eval", str(tiny_base), "--task", "nope"]) == 2
