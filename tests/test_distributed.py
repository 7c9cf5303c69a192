"""One job over two processes: `accelerate launch` on the CPU (gloo) matches one process with the same
global batch; the fsdp/deepspeed strategies are validated and configured, not run (they need GPUs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import missing  # tests/ is on sys.path under pytest
import yaml

from factory.request.config import parse_request
from factory.base.errors import UserError


def _request(tiny_base, data: Path, out: Path, micro_batch: int) -> dict:
    return {"base_model": str(tiny_base), "datasets": [{"path": str(data), "type": "completion"}],
            "sequence_len": 32, "micro_batch_size": micro_batch, "max_steps": 6, "learning_rate": 1e-3,
            "adapter": "lora", "lora_target_linear": True, "val_set_size": 4, "bf16": False, "logging_steps": 1,
            "excess_length_strategy": "truncate", "output_dir": str(out), "publish": {"enabled": False}}


def test_two_processes_match_one_with_the_same_global_batch(tiny_base, tmp_path, home):
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists():
        missing("the accelerate command is not installed beside this Python", "FACTORY_REQUIRE_EXTRAS")
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": f"document {i} is about {'music rain city'.split()[i % 3]} "
                                                 f"and {'night river song light'.split()[i % 4]}"}) + "\n" for i in range(40)))
    runs = {}
    for procs, micro_batch in ((1, 2), (2, 1)):  # global batch 2 either way
        out = tmp_path / f"procs-{procs}"
        req = tmp_path / f"r{procs}.yaml"
        req.write_text(yaml.safe_dump(_request(tiny_base, data, out, micro_batch)))
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        cmd = [sys.executable, "-m", "factory", "run", str(req)] if procs == 1 else [
            str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "factory", "run", str(req)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[procs] = out
        if procs == 2:
            assert done.stderr.count("6 steps in") == 1  # one process reports; the other only trains
    losses = {p: [(r["step"], r["loss"]) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                  if "loss" in r] for p, out in runs.items()}
    assert len(losses[1]) == len(losses[2]) == 6
    for (s1, l1), (s2, l2) in zip(losses[1], losses[2]):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-4)
    evals = {p: json.loads((out / "stages" / "train.json").read_text())["eval_loss"] for p, out in runs.items()}
    assert evals[1] == pytest.approx(evals[2], rel=1e-4)
    assert (runs[2] / "merged" / "model.safetensors").is_file()


def test_strategies_are_validated():
    base = {"base_model": "org/base", "datasets": [{"path": "o/d"}]}
    with pytest.raises(UserError, match="needs zero_stage"):
        parse_request({**base, "distributed": {"strategy": "deepspeed"}})
    with pytest.raises(UserError, match="zero_stage applies to strategy: deepspeed"):
        parse_request({**base, "distributed": {"strategy": "fsdp", "zero_stage": 2}})
    translated = parse_request({**base, "deepspeed": "deepspeed_configs/zero3.json"})  # Axolotl's key becomes ours
    assert (translated.distributed.strategy, translated.distributed.zero_stage) == ("deepspeed", 3)
    with pytest.raises(UserError, match="ZeRO stage cannot be read"):
        parse_request({**base, "deepspeed": "my_config.json"})
    assert parse_request({**base, "distributed": {"strategy": "deepspeed", "zero_stage": 3}}).distributed.zero_stage == 3


def test_strategy_arguments_for_the_trainer(monkeypatch):
    from factory.train.train import distributed_args

    base = {"base_model": "org/base", "datasets": [{"path": "o/d"}]}
    assert distributed_args(parse_request(base)) == {}  # one process: nothing to configure
    monkeypatch.setenv("WORLD_SIZE", "2")
    import torch

    real = torch.cuda.is_available
    assert distributed_args(parse_request(base))["ddp_backend"] == ("nccl" if real() else "gloo")  # this host
    for cuda, backend in ((True, "nccl"), (False, "gloo")):  # a GPU host gets NCCL, a CPU host gloo
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        assert distributed_args(parse_request(base))["ddp_backend"] == backend
    monkeypatch.setattr(torch.cuda, "is_available", real)
    ds = distributed_args(parse_request({**base, "distributed": {"strategy": "deepspeed", "zero_stage": 2}}))
    assert ds["deepspeed"]["zero_optimization"]["stage"] == 2
    fsdp = distributed_args(parse_request({**base, "adapter": "lora", "lora_target_linear": True,
                                           "distributed": {"strategy": "fsdp"}}))
    assert fsdp["fsdp"] == "full_shard auto_wrap" and fsdp["fsdp_config"]["use_orig_params"] is True
