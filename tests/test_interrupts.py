"""Ctrl-C (SIGINT) at seeded random points of `factory prepare` and `factory run`, five times each, then a
clean re-run: it succeeds and gives what an uninterrupted run gives, with nothing half-written left.

Where each interrupt lands depends on the machine's speed; what is asserted holds wherever it lands.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from factory import synthetic

INTERRUPTS = 5


def write_request(folder: Path, base: Path) -> Path:
    rows = synthetic.generate(300, held_out=False, seed=3)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    req = {"base_model": str(base), "datasets": [{"path": "train.jsonl"}], "sequence_len": 128,
           "adapter": "lora", "lora_target_linear": True, "lora_r": 4, "lora_alpha": 8, "micro_batch_size": 2,
           "max_steps": 8, "save_steps": 2, "logging_steps": 1, "learning_rate": 1e-3, "val_set_size": 0.1,
           "hub_model_id": "me/interrupted"}
    path = folder / "req.yaml"
    path.write_text(yaml.safe_dump(req))
    return path


def factory(args: list[str], home: Path, interrupt_after: float | None = None) -> tuple[int, float, str]:
    env = {**os.environ, "FACTORY_HOME": str(home), "FACTORY_HUB": "local"}
    env.pop("HF_TOKEN", None)
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "factory", *args], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if interrupt_after is not None:
        try:
            p.wait(timeout=interrupt_after)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=600)
    return p.returncode, time.monotonic() - t0, out + err


def leftovers(home: Path) -> list[str]:
    """Half-written things: temporary files, unfinished hub commits."""
    found = [p for p in home.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".incoming-")]
    return [str(p.relative_to(home)) for p in found]


def interrupted_then_clean(args: list[str], home: Path, seconds: float, seed: int) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    landed = []
    for _ in range(INTERRUPTS):
        delay = rng.uniform(1.5, seconds)  # after interpreter start-up (a Ctrl-C before main() is plain Python)
        code, _, out = factory(args, home, interrupt_after=delay)
        # 130: interrupted and said so; 0: it had finished first; -2: killed by the SIGINT after saying
        # "interrupted" (seen once in CI during a run, cause not found): all leave the same state behind
        assert code in (0, 130, -signal.SIGINT), out
        assert code != -signal.SIGINT or "interrupted; re-run" in out, out
        assert "Traceback" not in out, out
        assert leftovers(home) == [], out
        landed.append((round(delay, 2), code))
    print(f"{args[0]}: interrupts at (seconds, exit code) {landed}")
    code, _, out = factory(args, home)
    assert code == 0, out
    return landed


def test_ctrl_c_during_prepare_then_a_clean_rerun(tmp_path, tiny_base):
    req = write_request(tmp_path, tiny_base)
    code, seconds, out = factory(["prepare", str(req), "--json", str(tmp_path / "a.json")], tmp_path / "home-a")
    assert code == 0, out
    interrupted_then_clean(["prepare", str(req), "--json", str(tmp_path / "b.json")], tmp_path / "home-b", seconds, 11)

    def report(name):
        r = json.loads((tmp_path / name).read_text())
        r["tokenising"] = r["tokenising"]["key"]  # the same cache key; hit or miss depends on where it stopped
        return {k: v for k, v in r.items() if not k.startswith("seconds")}

    assert report("b.json") == report("a.json")


def _weights(home: Path) -> dict:
    from safetensors.torch import load_file

    from factory.hub import LocalHub

    folder, _ = LocalHub(home / "hub").snapshot("me/interrupted")
    return load_file(folder / "model.safetensors")


def test_ctrl_c_during_run_then_a_clean_rerun(tmp_path, tiny_base):
    import torch

    req = write_request(tmp_path, tiny_base)
    code, seconds, out = factory(["run", str(req)], tmp_path / "home-a")
    assert code == 0, out
    interrupted_then_clean(["run", str(req)], tmp_path / "home-b", seconds, 12)
    a, b = _weights(tmp_path / "home-a"), _weights(tmp_path / "home-b")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    revisions = list((tmp_path / "home-b" / "hub" / "models" / "me" / "interrupted" / "revisions").iterdir())
    assert revisions, "nothing was published"
