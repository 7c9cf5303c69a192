"""The Axolotl options the factory implements do what they say, on short runs of the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from factory.cli.main import main
from factory.base.errors import UserError


def _request(tmp_path: Path, base: Path, rows: int = 48, **keys) -> Path:
    from factory.demo import synthetic

    data = tmp_path / "train.jsonl"
    if not data.is_file():
        data.write_text("".join(json.dumps(r) + "\n" for r in synthetic.generate(rows, held_out=False, seed=3)))
    req = {"base_model": str(base), "datasets": [{"path": str(data), "type": "alpaca"}], "sequence_len": 256,
           "micro_batch_size": 1, "num_epochs": 1, "learning_rate": 1e-3, "logging_steps": 1,
           "publish": {"enabled": False}, **keys}
    path = tmp_path / f"req-{len(list(tmp_path.glob('req-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(req))
    return path


def _run_dir(home: Path, name_part: str = "") -> Path:
    return max((p for p in (home / "runs").iterdir() if name_part in p.name), key=lambda p: p.stat().st_mtime)


def test_loss_watchdog_stops_a_run_whose_loss_stays_high(tmp_path, home, tiny_base, capsys):
    req = _request(tmp_path, tiny_base, loss_watchdog_threshold=0.01, loss_watchdog_patience=2)
    assert main(["run", str(req)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "loss watchdog" in err and "above 0.01 for 2 logged steps" in err
    assert not (_run_dir(home) / "merged").exists()  # nothing after training ran


def test_early_stopping_ends_the_run_when_eval_loss_stops_improving(tmp_path, home, tiny_base):
    """A learning rate far too high makes the eval loss worse at once: patience 1 stops after two evaluations."""
    keys = dict(rows=48, val_set_size=0.25, learning_rate=0.5, lr_scheduler="constant", eval_steps=2,
                sample_packing=False, save_total_limit=3)
    assert main(["run", str(_request(tmp_path, tiny_base, output_dir=str(tmp_path / "full"), **keys))]) == 0
    planned = json.loads((tmp_path / "full" / "stages" / "train.json").read_text())["steps"]
    assert main(["run", str(_request(tmp_path, tiny_base, output_dir=str(tmp_path / "early"),
                                     early_stopping_patience=1, **keys))]) == 0
    stopped = json.loads((tmp_path / "early" / "stages" / "train.json").read_text())["steps"]
    assert planned >= 30 and stopped <= planned // 3, (planned, stopped)  # stopped at the first evaluation that got worse
    state = json.loads(sorted((tmp_path / "early" / "checkpoints").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    evals = [h["eval_loss"] for h in state["log_history"] if "eval_loss" in h]
    assert evals[-1] > min(evals) == state["best_metric"]  # it stopped because the last evaluation was worse


def test_lora_model_dir_continues_an_existing_adapter(tmp_path, home, tiny_base):
    from safetensors.torch import load_file

    first = _request(tmp_path, tiny_base, adapter="lora", lora_target_linear=True, output_dir=str(tmp_path / "a"))
    assert main(["run", str(first)]) == 0
    adapter_a = tmp_path / "a" / "adapter"
    a = load_file(adapter_a / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in a.items())  # trained, not the zero init
    second = _request(tmp_path, tiny_base, adapter="lora", lora_target_linear=True, lora_model_dir=str(adapter_a),
                      max_steps=1, learning_rate=1e-7, output_dir=str(tmp_path / "b"))
    assert main(["run", str(second)]) == 0
    b = load_file(tmp_path / "b" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4  # started from a, one tiny step away


def test_resume_from_checkpoint_names_a_checkpoint_to_continue(tmp_path, home, tiny_base, capsys):
    first = _request(tmp_path, tiny_base, max_steps=4, save_steps=2, output_dir=str(tmp_path / "a"))
    assert main(["run", str(first)]) == 0
    checkpoint = tmp_path / "a" / "checkpoints" / "checkpoint-2"
    assert checkpoint.is_dir()
    capsys.readouterr()
    second = _request(tmp_path, tiny_base, max_steps=4, save_steps=2, output_dir=str(tmp_path / "b"),
                      resume_from_checkpoint=str(checkpoint))
    assert main(["run", str(second)]) == 0
    seen = capsys.readouterr()
    assert f"resuming from {checkpoint}" in seen.out + seen.err
    state = json.loads((tmp_path / "b" / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h][0] <= 2  # the history came from a's checkpoint


def test_dataset_prepared_path_holds_the_tokenised_cache(tmp_path, home, tiny_base, capsys):
    req = _request(tmp_path, tiny_base, dataset_prepared_path="prepared")
    assert main(["prepare", str(req)]) == 0
    assert len([p for p in (tmp_path / "prepared").iterdir() if p.is_dir()]) == 1  # relative to the request's folder
    assert not (home / "cache" / "encoded").exists()
    capsys.readouterr()
    again = _request(tmp_path, tiny_base, dataset_prepared_path="prepared", output_dir=str(tmp_path / "other-run"))
    assert main(["prepare", str(again)]) == 0  # another run of the same data finds it there
    assert "cache hit" in capsys.readouterr().out


def test_unfrozen_parameters_train_only_what_they_match(tmp_path, home, tiny_base):
    from safetensors.torch import load_file

    req = _request(tmp_path, tiny_base, unfrozen_parameters=[r"^model\.layers\.0\.mlp\."], max_steps=2)
    assert main(["run", str(req)]) == 0
    before = load_file(tiny_base / "model.safetensors")
    after = load_file(_run_dir(home) / "merged" / "model.safetensors")
    changed = {k for k in before if not (before[k] == after[k]).all()}
    assert changed and all(k.startswith("model.layers.0.mlp.") for k in changed), changed


def test_special_tokens_with_lora_train_the_new_rows_and_the_card_says_so(tmp_path, home, tiny_base):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    req = _request(tmp_path, tiny_base, adapter="lora", lora_target_linear=True, max_steps=2,
                   special_tokens={"pad_token": "<|pad|>"}, tokens=["<tool>"])
    assert main(["run", str(req)]) == 0
    merged = _run_dir(home) / "merged"
    tok = AutoTokenizer.from_pretrained(merged)
    assert tok.pad_token == "<|pad|>" and "<tool>" in tok.get_vocab()
    weights = load_file(merged / "model.safetensors")
    assert weights["model.embed_tokens.weight"].shape[0] == len(tok) == weights["lm_head.weight"].shape[0]
    card = (merged / "README.md").read_text()
    assert "added tokens" in card and "embedding and output layers trained in full" in card


def test_wandb_offline_writes_a_local_run(tmp_path, home, tiny_base, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is the `tracking` extra")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    req = _request(tmp_path, tiny_base, max_steps=2, wandb_project="factory-test", wandb_mode="offline",
                   wandb_name="tiny")
    assert main(["run", str(req)]) == 0
    runs = list((tmp_path / "wandb").rglob("offline-run-*"))
    assert runs, list((tmp_path / "wandb").rglob("*"))[:20]
    assert any(p.suffix == ".wandb" for r in runs for p in r.rglob("*"))


def test_trackio_logs_the_run_locally_under_the_requests_project(tmp_path, home, tiny_base, monkeypatch):
    import importlib.util
    import sqlite3

    if importlib.util.find_spec("trackio") is None:
        from conftest import missing

        missing("trackio is not installed (the `tracking` and `dev` extras have it)", "FACTORY_REQUIRE_EXTRAS")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    req = _request(tmp_path, tiny_base, max_steps=2, use_trackio=True, trackio_project_name="factory-test",
                   trackio_run_name="tiny")
    assert main(["run", str(req)]) == 0
    db = tmp_path / "trackio" / "factory-test.db"  # the request's project, not the Trainer's default
    assert db.is_file(), list((tmp_path / "trackio").iterdir())
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select run_name, metrics from metrics").fetchall()
    losses = [json.loads(m)["train/loss"] for name, m in rows if name == "tiny" and "train/loss" in json.loads(m)]
    assert len(losses) == 2  # logging_steps 1, two steps


def test_min_sample_len_drops_the_short_samples_and_says_how_many(tmp_path, home, tiny_base, capsys):
    import numpy as np

    from factory.data import encoded_store

    req = _request(tmp_path, tiny_base, max_steps=1, min_sample_len=40)
    assert main(["prepare", str(req)]) == 0
    out = capsys.readouterr()
    dropped = int(out.err.split("shorter than min_sample_len: ")[1].split(" dropped")[0])
    report = json.loads((_run_dir(home) / "data" / "report.json").read_text())
    assert report["too_short"] == dropped and 0 < dropped < 48
    _, train, evalset = encoded_store.load(_run_dir(home) / "data" / "encoded")
    assert len(train) == 48 - dropped and np.all(train.lengths >= 40)


def test_lr_quadratic_warmup_follows_step_over_warmup_squared(tmp_path, home, tiny_base):
    from factory.train.schedules import quadratic_warmup_cosine

    req = _request(tmp_path, tiny_base, max_steps=8, warmup_steps=4, lr_quadratic_warmup=True, learning_rate=1e-3)
    assert main(["run", str(req)]) == 0
    logged = [json.loads(x) for x in (_run_dir(home) / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["learning_rate"] for r in logged if "learning_rate" in r}
    assert len(lrs) == 8
    for step, lr in lrs.items():  # the rate each logged step trained with
        assert lr == pytest.approx(1e-3 * quadratic_warmup_cosine(step - 1, 4, 8), abs=1e-12), (step, lrs)
    assert [round(quadratic_warmup_cosine(s, 4, 8), 4) for s in range(5)] == [0.0, 0.0625, 0.25, 0.5625, 1.0]


def test_curriculum_keeps_the_data_order_from_the_file_to_the_training_rows(tmp_path, home):
    from factory.request.config import parse_request
    from factory.data.data import prepare
    from factory.hub.local import LocalHub
    from factory.train.train import epoch_order

    data = tmp_path / "ordered.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"step {i}", "output": f"answer {i}"}) + "\n" for i in range(30)))
    spec = {"base_model": "o/m", "datasets": [{"path": str(data), "type": "alpaca"}], "val_set_size": 5}
    kept = prepare(parse_request({**spec, "shuffle_merged_datasets": False}), LocalHub(home / "hub"))
    order = [int(s.messages[0][1].split()[-1]) for s in kept.train]
    assert order == sorted(order) and len(order) == 25  # the file's order, five rows held out at random
    assert sorted(order + [int(s.messages[0][1].split()[-1]) for s in kept.eval]) == list(range(30))
    shuffled = prepare(parse_request(spec), LocalHub(home / "hub"))
    assert [int(s.messages[0][1].split()[-1]) for s in shuffled.train] != order[: len(shuffled.train)]
    assert epoch_order(4, 2, None, 7, shuffle=False) == [0, 1, 2, 3, 0, 1, 2, 3]
    assert epoch_order(4, 2, None, 7) != [0, 1, 2, 3, 0, 1, 2, 3]


def test_lisa_trains_only_the_chosen_layers_at_a_time(tmp_path, home, tiny_base, capsys):
    import re

    import torch
    from safetensors.torch import load_file

    req = _request(tmp_path, tiny_base, max_steps=4, lisa_n_layers=1, lisa_step_interval=2, learning_rate=1e-2)
    assert main(["run", str(req)]) == 0
    chosen = {int(i) for m in re.findall(r"LISA: layers \[([0-9, ]+)\] of 4 train from step (?:0|2)\b", capsys.readouterr().err)
              for i in m.split(",")}
    assert 1 <= len(chosen) <= 2
    before = load_file(str(tiny_base / "model.safetensors"))
    after = load_file(str(_run_dir(home) / "model" / "model.safetensors"))
    changed = {int(re.search(r"layers\.(\d+)\.", k).group(1)) for k in before
               if ".layers." in k and not torch.equal(before[k], after[k])}
    assert changed == chosen  # the other layers did not move at all
    assert not torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])  # trains throughout
    with pytest.raises(Exception, match="lisa_n_layers is a full finetune"):
        from factory.request.config import parse_request

        parse_request({"base_model": "o/m", "datasets": [{"path": "o/d"}], "adapter": "lora",
                       "lora_target_linear": True, "lisa_n_layers": 2})


def test_weights_dtype_trains_half_precision_weights_without_mixed_precision(tmp_path, home, tiny_base):
    import math

    import torch
    from safetensors.torch import load_file

    from factory.request.config import parse_request

    r = parse_request({"base_model": "o/m", "datasets": [{"path": "o/d"}], "float16": True, "fp16": False, "bf16": False})
    assert r.weights_dtype == "float16" and "float16: true, fp16: false -> weights_dtype: float16" in r.compat.translated
    req = _request(tmp_path, tiny_base, max_steps=3, weights_dtype="float16", bf16=False)
    assert main(["run", str(req)]) == 0
    saved = load_file(str(_run_dir(home) / "model" / "model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float16}
    before = load_file(str(tiny_base / "model.safetensors"))
    moved = [k for k in before if not torch.equal(before[k].to(torch.float16), saved[k])]
    assert moved  # the half-precision weights were updated
    losses = [json.loads(x)["loss"] for x in (_run_dir(home) / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert losses and all(math.isfinite(v) for v in losses)


def test_mlflow_logs_the_run_to_the_requests_tracking_uri(tmp_path, home, tiny_base, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        from conftest import missing

        missing("mlflow is not installed (the `tracking` and `dev` extras have mlflow-skinny)", "FACTORY_REQUIRE_EXTRAS")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow 3 refuses its old file store
    req = _request(tmp_path, tiny_base, max_steps=2, mlflow_tracking_uri=store,
                   mlflow_experiment_name="factory-test", mlflow_run_name="tiny")
    assert main(["run", str(req)]) == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("factory-test")  # the request's experiment, not "Default"
    assert experiment is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_name for r in runs] == ["tiny"]
    losses = client.get_metric_history(runs[0].info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2]  # logging_steps 1, two steps
    assert "MLFLOW_TRACKING_URI" not in __import__("os").environ  # set for the run only


def test_an_mlflow_folder_store_is_named_before_the_run_not_failed_at_its_first_log(monkeypatch):
    import importlib.util

    from factory.request.config import parse_request
    from factory.admission.lint import Facts, lint

    if importlib.util.find_spec("mlflow") is None:
        from conftest import missing

        missing("mlflow is not installed (the `tracking` and `dev` extras have mlflow-skinny)", "FACTORY_REQUIRE_EXTRAS")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    base = {"base_model": "org/base", "datasets": [{"path": "data.jsonl", "type": "alpaca"}]}
    for uri in ("./mlruns", "file:///tmp/mlruns"):
        found = [f for f in lint(parse_request({**base, "mlflow_tracking_uri": uri}), Facts())
                 if f.rule == "tracker-unavailable"]
        assert len(found) == 1 and "sqlite:///" in found[0].message, (uri, found)
    assert not [f for f in lint(parse_request({**base, "mlflow_tracking_uri": "sqlite:///x/mlflow.db"}), Facts())
                if f.rule == "tracker-unavailable"]
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the operator opted back in
    assert not [f for f in lint(parse_request({**base, "mlflow_tracking_uri": "./mlruns"}), Facts())
                if f.rule == "tracker-unavailable"]


def _stepped_rates(make_scheduler, total: int, lr: float) -> list[float]:
    """The rate each of `total` steps trains at under the scheduler make_scheduler(optimizer) builds."""
    import torch

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt)
    rates = []
    for _ in range(total):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


@pytest.mark.parametrize("keys", [
    {"lr_scheduler": "rex", "cosine_min_lr_ratio": 0.1},
    {"lr_scheduler": "cosine", "cosine_min_lr_ratio": 0.2, "cosine_constant_lr_ratio": 0.5},
    {"lr_scheduler": "one_cycle", "lr_scheduler_kwargs": {"div_factor": 10}},
    {"lr_scheduler": "polynomial", "lr_scheduler_kwargs": {"power": 2.0}},
], ids=["rex", "cosine-floor-constant", "one_cycle", "polynomial"])
def test_axolotls_learning_rate_schedules_are_followed_step_by_step(tmp_path, home, tiny_base, keys):
    """Each logged step trained at the rate Axolotl's schedule (or torch's/transformers' own) gives it."""
    from factory.train import schedules

    req = _request(tmp_path, tiny_base, max_steps=8, warmup_steps=2, learning_rate=1e-3, **keys)
    assert main(["run", str(req)]) == 0
    logged = [json.loads(x) for x in (_run_dir(home) / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["learning_rate"] for r in sorted(logged, key=lambda r: r["step"]) if "learning_rate" in r]
    assert len(lrs) == 8
    kind = keys["lr_scheduler"]
    if kind == "rex":
        expected = [1e-3 * schedules.rex(s, 2, 8, 0.1) for s in range(8)]
    elif kind == "cosine":
        expected = [1e-3 * schedules.cosine_floor_constant(s, 2, 8, 0.2, 0.5) for s in range(8)]
        assert expected[4:] == [pytest.approx(2e-4)] * 4  # the floor from half the steps on
    elif kind == "one_cycle":
        from torch.optim.lr_scheduler import OneCycleLR

        expected = _stepped_rates(lambda opt: OneCycleLR(opt, max_lr=1e-3, total_steps=8, pct_start=2 / 8,
                                                         anneal_strategy="cos", div_factor=10), 8, 1e-3)
    else:
        from transformers import get_polynomial_decay_schedule_with_warmup

        expected = _stepped_rates(lambda opt: get_polynomial_decay_schedule_with_warmup(opt, 2, 8, power=2.0), 8, 1e-3)
    assert lrs == [pytest.approx(e, abs=1e-12) for e in expected], (lrs, expected)
    assert len(set(round(x, 12) for x in lrs)) > 3  # a shape, not a constant


def test_rex_matches_axolotls_formula_at_known_points():
    from factory.train.schedules import rex

    assert rex(0, 2, 10, 0.0) == 0.0 and rex(1, 2, 10, 0.0) == 0.5 and rex(2, 2, 10, 0.0) == 1.0
    assert rex(6, 2, 10, 0.0) == pytest.approx((1 - 0.5) / (1 - 0.25))  # z = 1/2
    assert rex(10, 2, 10, 0.1) == pytest.approx(0.1)


def test_schedule_keys_are_checked_before_training():
    from factory.request.config import parse_request

    base = {"base_model": "org/base", "datasets": [{"path": "org/data"}]}
    for keys, message in [
        ({"lr_scheduler": "one_cycle", "lr_scheduler_kwargs": {"power": 2}}, "not power"),
        ({"cosine_constant_lr_ratio": 0.5}, "cosine_constant_lr_ratio needs lr_scheduler: cosine and cosine_min_lr_ratio"),
        ({"optimizer": "galore_adamw"}, "optim_target_modules"),
        ({"loraplus_lr_ratio": 16}, "add adapter: lora"),
    ]:
        with pytest.raises(UserError) as err:
            parse_request({**base, **keys})
        assert message in str(err.value), (keys, str(err.value))


def test_peft_options_reach_the_adapter(tiny_base):
    """peft_layers_to_transform, lora_rank_pattern/alpha_pattern and peft_init_lora_weights build the adapter
    peft would build from the same LoraConfig."""
    import torch
    from transformers import AutoModelForCausalLM

    from factory.request.config import parse_request
    from factory.train.train import wrap_adapter

    request = parse_request({"base_model": str(tiny_base), "datasets": [{"path": "org/data"}], "adapter": "lora",
                             "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"],
                             "peft_layers_to_transform": [0], "lora_rank_pattern": {"v_proj": 2},
                             "lora_alpha_pattern": {"v_proj": 2}, "peft_init_lora_weights": "gaussian"})
    torch.manual_seed(0)
    model = wrap_adapter(request, AutoModelForCausalLM.from_pretrained(tiny_base))
    lora = {n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}
    assert lora and all(".layers.0." in n for n in lora), sorted(lora)  # layer 0 only
    q = next(m for n, m in lora.items() if n.endswith("q_proj"))
    v = next(m for n, m in lora.items() if n.endswith("v_proj"))
    assert q.r["default"] == 4 and v.r["default"] == 2 and v.scaling["default"] == 1.0 and q.scaling["default"] == 2.0
    assert float(q.lora_B["default"].weight.detach().abs().sum()) == 0.0  # gaussian init: A random, B zero
    assert model.peft_config["default"].init_lora_weights == "gaussian"


def test_loraplus_gives_b_matrices_ratio_times_the_learning_rate(tmp_path, tiny_base):
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from factory.request.config import parse_request
    from factory.train.train import wrap_adapter
    from factory.train.train_options import with_loraplus

    request = parse_request({"base_model": str(tiny_base), "datasets": [{"path": "org/data"}], "adapter": "lora",
                             "lora_target_linear": True, "loraplus_lr_ratio": 16, "learning_rate": 1e-4})
    model = wrap_adapter(request, AutoModelForCausalLM.from_pretrained(tiny_base))
    trainer = with_loraplus(Trainer, request)(model=model, args=TrainingArguments(
        output_dir=str(tmp_path), learning_rate=1e-4, use_cpu=True, report_to=[]))
    optimizer = trainer.create_optimizer()
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    a = [rate[id(p)] for n, p in named.items() if "lora_A" in n]
    b = [rate[id(p)] for n, p in named.items() if "lora_B" in n]
    assert a and b and set(a) == {1e-4} and all(x == pytest.approx(1.6e-3) for x in b)
