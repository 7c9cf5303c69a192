"""Held-out task scores at each evaluation during training, and the checkpoint kept by the metric the request names."""

from __future__ import annotations

import json

import pytest
import yaml

from factory.base.errors import UserError
from factory.cli.main import main


def _rows(tmp_path):
    """The demo's questions answered right, then other questions all answered
    'rain': the held-out score rises, then falls (the rows in their order: shuffle_merged_datasets: false and
    curriculum_sampling), so the best checkpoint is not the last."""
    from factory.demo.synthetic import generate

    right = generate(1200, held_out=False, seed=0)
    wrong = [{**r, "output": "rain"} for r in generate(1200, held_out=False, seed=1)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in right + wrong))
    return path


def _request(tmp_path, **over) -> dict:
    from factory.demo.demo import REQUEST

    data = yaml.safe_load(REQUEST.read_text())
    data.pop("contamination")
    data.update({"datasets": [{"path": str(_rows(tmp_path)), "type": "alpaca"}], "num_epochs": 1,
                 "curriculum_sampling": True, "sample_packing_sequentially": True, "shuffle_merged_datasets": False, "val_set_size": 0.02,
                 "warmup_steps": 5, "lr_scheduler": "constant_with_warmup", "eval_steps": 20,
                 "evals": {"tasks": ["factory_demo_heldout"], "limit": 20},
                 "load_best_model_at_end": True, "metric_for_best_model": "factory_demo_heldout",
                 "hub_model_id": "factory/kept-best", **over})
    return data


def test_scores_during_training_and_the_best_checkpoint_kept(demo_hub, home, tmp_path, capsys):
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(_request(tmp_path)))
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr()
    run = next((home / "runs").iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scores = {r["step"]: r["eval_factory_demo_heldout"] for r in rows if "eval_factory_demo_heldout" in r}
    evaluations = [r["step"] for r in rows if "eval_loss" in r]
    during = evaluations[:-1]  # the last: the evaluation of the kept model after training
    assert sorted(scores) == during and len(during) >= 4  # one point per evaluation
    steps = sorted(scores)
    best = max(steps, key=lambda s: (scores[s], -s))  # the first of the best (a tie is no improvement)
    assert scores[best] > scores[steps[-1]], scores  # the task was built so that a later step is worse
    assert scores[best] > 0, scores

    kept = json.loads((run / "stages" / "train.json").read_text())["kept"]
    assert (kept["step"], kept["metric"], kept["value"]) == (best, "eval_factory_demo_heldout", scores[best])
    assert kept["greater_is_better"] and kept["last_step"] >= steps[-1]
    # the trained adapter is the kept checkpoint's, not the last step's
    from safetensors.torch import load_file

    final = load_file(run / "adapter" / "adapter_model.safetensors")
    at_best = load_file(run / "checkpoints" / f"checkpoint-{best}" / "adapter_model.safetensors")
    assert final.keys() == at_best.keys() and all((final[k] == at_best[k]).all() for k in final)

    card = (run / "README.md").read_text()
    assert f"kept checkpoint: step {best} of {kept['last_step']}, the best eval_factory_demo_heldout" in card
    assert "![Held-out task scores during training](scores.svg)" in card
    assert (run / "merged" / "scores.svg").read_text().count("<polyline") == 1
    assert f"step {best}: factory_demo_heldout {scores[best]:.3f}" in out.err + out.out


def test_the_space_plots_the_scores_beside_the_loss():
    from factory.frontdoor.job_views import loss_points
    from factory.queue.jobs import JobEvent

    def event(**payload):
        return JobEvent(id=0, job_id=1, time=None, kind="progress", payload={"stage": "train", **payload})

    points = loss_points([event(step=10, total=40, loss=2.0), event(step=20, total=40, scores={"gsm8k": 0.25}),
                          event(step=20, total=40, scores={"gsm8k": 0.25})])  # a repeated event is one point
    assert {"step": 20, "loss": 0.25, "split": "gsm8k score"} in points
    assert sum(p["split"] == "gsm8k score" for p in points) == 1


def test_the_kept_metric_is_checked_at_the_door(tmp_path):
    from factory.request.config import loads_request

    def load(**over):
        data = _request(tmp_path, **over)
        return loads_request(yaml.safe_dump(data))

    assert load().best_metric == ("eval_factory_demo_heldout", True)
    assert load(metric_for_best_model="eval_factory_demo_heldout").best_metric == ("eval_factory_demo_heldout", True)
    assert load(metric_for_best_model="eval_loss").best_metric == ("eval_loss", False)
    assert load(metric_for_best_model="factory_demo_heldout", greater_is_better=False).best_metric[1] is False
    for over, message in (({"metric_for_best_model": "gsm8k"}, "neither eval_loss nor one of evals.tasks"),
                          ({"eval_steps": None}, "set eval_steps or evals_per_epoch"),
                          ({"val_set_size": 0}, "need an eval split"),
                          ({"evals": {"tasks": ["factory_demo_heldout"], "during_training_limit": 0}},
                           "evals.during_training_limit: 0 turns that off")):
        with pytest.raises(UserError, match=message):
            load(**over)
