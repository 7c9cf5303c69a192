"""The base model's eval scores, computed once per machine and reused while nothing that decides them changes."""

from __future__ import annotations

import json

import yaml

from factory.cli.main import main


def _request(tmp_path, name: str, **over) -> str:
    from factory.demo.demo import REQUEST

    data = yaml.safe_load(REQUEST.read_text())
    data.update({"max_steps": 4, "evals": {"tasks": ["factory_demo_heldout"], "limit": 12}, "contamination": None,
                 "hub_model_id": f"factory/{name}", **over})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    return str(path)


def _run(request: str, capsys) -> tuple[dict, str]:
    from factory.base.home import runs_root

    assert main(["run", request]) == 0
    out = capsys.readouterr()
    run = max(runs_root().iterdir(), key=lambda p: p.stat().st_mtime)
    return json.loads((run / "eval.json").read_text()), out.out + out.err


def test_a_second_job_on_the_same_base_reuses_its_scores(demo_hub, home, tmp_path, capsys):
    first, out = _run(_request(tmp_path, "first"), capsys)
    base = first["factory_demo_heldout"]["base"]
    assert "cached" not in base and "base: cached" not in out
    entries = list((home / "cache" / "base_scores").glob("*.json"))
    assert len(entries) == 1

    # another job (another seed and learning rate) on the same base and items: the base is not scored again
    second, out = _run(_request(tmp_path, "second", seed=7, learning_rate=1e-3), capsys)
    reused = second["factory_demo_heldout"]["base"]
    assert reused.pop("cached") == json.loads(entries[0].read_text())["computed"]
    assert reused == base  # the same table: value, stderr, items
    assert "base: cached from" in out
    run = max((home / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    assert "base: cached from" in (run / "README.md").read_text()

    # a corrupt entry is ignored: the base is scored again and the entry rewritten
    entries[0].write_text("{not json")
    third, out = _run(_request(tmp_path, "third", seed=8), capsys)
    assert "cached" not in third["factory_demo_heldout"]["base"]
    assert third["factory_demo_heldout"]["base"] == base
    assert json.loads(entries[0].read_text())["score"]["value"] == base["value"]

    # other items (a larger subset) miss the cache: a second entry
    _run(_request(tmp_path, "fourth", seed=9, evals={"tasks": ["factory_demo_heldout"], "limit": 13}), capsys)
    assert len(list((home / "cache" / "base_scores").glob("*.json"))) == 2


def test_every_input_that_decides_a_base_score_is_in_its_key(demo_hub, home):
    from evals.harness import task_inputs
    from factory.base.home import placeholders
    from factory.run import base_scores

    base_dir, rev = demo_hub.snapshot("factory/tiny-llama")
    model = base_scores.model_identity(base_dir, "local", "factory/tiny-llama", rev)
    settings = {"max_new_tokens": 256, "seed": 1234, "apply_chat_template": True}

    def key(model=model, dtype="float32", template="T", limit=12, seed=1234, settings=settings, task_file=None):
        tasks = task_inputs(["factory_demo_heldout"], limit=limit, seed=seed, substitutions=placeholders())
        return base_scores.keys(model, dtype, template, tasks, settings)["factory_demo_heldout"]["key"]

    reference = key()
    assert key() == reference  # deterministic
    held_out = home / "evals" / "factory_demo_heldout.jsonl"
    changed = {
        "revision": key(model={**model, "revision": "0" * 40}),
        "folder content": key(model=base_scores.model_identity(base_dir, "local", "factory/tiny-llama", None)),
        "dtype": key(dtype="bfloat16"),
        "chat template": key(template="U"),
        "chat template off": key(template=None),
        "item ids (limit)": key(limit=11),
        "item ids (seed)": key(seed=99),
        "generation settings": key(settings={**settings, "max_new_tokens": 16}),
    }
    original = held_out.read_text()
    held_out.write_text(original.replace('"answer": "', '"answer": "x', 1))  # the task's data
    changed["task data"] = key()
    held_out.write_text(original)
    assert key() == reference
    import evals.score_cache as score_cache
    from unittest import mock

    with mock.patch.object(base_scores, "_versions", return_value={"lm-eval": "0.0.1"}):
        changed["lm-eval version"] = key()
    with mock.patch.object(score_cache, "VERSION", score_cache.VERSION + 1):
        changed["cache format"] = key()
    assert all(k != reference for k in changed.values()), [n for n, k in changed.items() if k == reference]
    assert len(set(changed.values())) == len(changed)


def test_a_folder_base_is_identified_by_its_files(tmp_path):
    from factory.run.base_scores import model_identity

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    (tmp_path / "README.md").write_text("a card does not change the scores")
    one = model_identity(tmp_path, "local", str(tmp_path), None)
    (tmp_path / "README.md").write_text("another card")
    assert model_identity(tmp_path, "local", str(tmp_path), None) == one
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert model_identity(tmp_path, "local", str(tmp_path), None) != one


def test_an_entry_that_does_not_read_back_is_ignored(tmp_path):
    from evals import score_cache

    key = score_cache.key_of({"a": 1})
    assert score_cache.load(tmp_path, key) is None
    when = score_cache.save(tmp_path, key, {"value": 0.5, "n": 3}, {"a": 1})
    assert score_cache.load(tmp_path, key) == {"score": {"value": 0.5, "n": 3}, "computed": when}
    for bad in ("", "[]", '{"key": "other"}', json.dumps({"key": key, "computed": when, "score": {"value": "x"}})):
        (tmp_path / f"{key}.json").write_text(bad)
        assert score_cache.load(tmp_path, key) is None
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, no temp file left
