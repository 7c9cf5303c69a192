"""Ctrl-C (SIGINT) at seeded random points of `factory prepare` and `factory run`, five times each, then a
clean re-run: it succeeds and gives what an uninterrupted run gives, with nothing half-written left.

Where each interrupt lands depends on the machine's speed; what is asserted holds wherever it lands: a
run ends "interrupted" (exit 130, it said so) or "finished before the interrupt" (exit 0, and it never saw
the signal), never as a run that saw the Ctrl-C and finished or published anyway. A second Ctrl-C stops at
once, also leaving nothing half-written.
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

import pytest
import yaml

from factory.demo import synthetic
from factory.base.interrupt import FIRST, MESSAGE

INTERRUPTS = 5
SAW_IT = FIRST.decode().strip()


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


def factory(args: list[str], home: Path, interrupt_after: float | None = None,
            again_after: float | None = None) -> tuple[int, float, str]:
    """Run `factory ARGS`; with interrupt_after, a Ctrl-C then (and with again_after, a second one later)."""
    env = {**os.environ, "FACTORY_HOME": str(home), "FACTORY_HUB": "local"}
    env.pop("HF_TOKEN", None)
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "factory", *args], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    for wait in (interrupt_after, again_after):
        if wait is None:
            break
        try:
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=600)
    return p.returncode, time.monotonic() - t0, out + err


def leftovers(home: Path) -> list[str]:
    """Half-written things: temporary files and folders, unfinished cache entries, merges and hub commits."""
    found = [p for p in home.rglob("*") if p.name.endswith((".tmp", ".partial")) or ".tmp-" in p.name
             or p.name.startswith(".incoming-")]
    return [str(p.relative_to(home)) for p in found]


def outcome(code: int, out: str) -> str:
    """'interrupted', 'stopped at once' (a second Ctrl-C) or 'finished first'; anything else (a run that saw the Ctrl-C and ended as done, a
    traceback, another exit code) fails the test."""
    assert "Traceback" not in out, out
    if code == 130:
        assert MESSAGE in out, out
        return "stopped at once" if "stopped at once" in out else "interrupted"
    assert code == 0, out
    assert SAW_IT not in out, f"the run saw the Ctrl-C and still finished:\n{out}"
    return "finished first"


def interrupted_then_clean(args: list[str], home: Path, seconds: float, seed: int,
                           twice: bool = False) -> list[tuple[float, str]]:
    rng = random.Random(seed)
    landed = []
    for _ in range(INTERRUPTS):
        delay = rng.uniform(1.5, seconds)  # after interpreter start-up (a Ctrl-C before main() is plain Python)
        again = rng.uniform(0.01, 0.5) if twice else None
        code, _, out = factory(args, home, interrupt_after=delay, again_after=again)
        landed.append((round(delay, 2), outcome(code, out)))
        assert leftovers(home) == [], out
    print(f"{args[0]}: interrupts at (seconds, outcome) {landed}")
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

    from factory.hub.local import LocalHub

    folder, _ = LocalHub(home / "hub").snapshot("me/interrupted")
    return load_file(folder / "model.safetensors")


@pytest.mark.parametrize("twice", [False, True], ids=["ctrl-c", "ctrl-c-twice"])
def test_ctrl_c_during_run_then_a_clean_rerun(tmp_path, tiny_base, twice):
    import torch

    req = write_request(tmp_path, tiny_base)
    code, seconds, out = factory(["run", str(req)], tmp_path / "home-a")
    assert code == 0, out
    interrupted_then_clean(["run", str(req)], tmp_path / "home-b", seconds, 12 + twice, twice=twice)
    a, b = _weights(tmp_path / "home-a"), _weights(tmp_path / "home-b")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    revisions = list((tmp_path / "home-b" / "hub" / "models" / "me" / "interrupted" / "revisions").iterdir())
    assert revisions, "nothing was published"


HARD_STOP = r"""
import os, signal, sys, time
from pathlib import Path
from factory.base import interrupt

out = Path(sys.argv[1])
with interrupt.handling():
    with interrupt.partial(out / "half.bin"):
        (out / "half.bin").write_bytes(b"x" * 1000)
        os.kill(os.getpid(), signal.SIGINT)   # the first: recorded, the work goes on
        time.sleep(0.2)
        (out / "saw-first").write_text(str(interrupt.requested()))
        os.kill(os.getpid(), signal.SIGINT)   # the second: at once, from wherever the handler runs
        for _ in range(100):
            time.sleep(0.05)
        (out / "not-reached").write_text("")
"""


def test_a_second_ctrl_c_stops_at_once_and_removes_partial_files(tmp_path):
    p = subprocess.run([sys.executable, "-c", HARD_STOP, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 130, p.stderr
    assert (tmp_path / "saw-first").read_text() == "True"
    assert not (tmp_path / "half.bin").exists() and not (tmp_path / "not-reached").exists()
    assert SAW_IT in p.stderr and "stopped at once" in p.stderr and "Traceback" not in p.stderr


def test_safe_points_raise_once_asked_and_the_worker_check_runs_in_its_thread():
    from factory.base import interrupt

    interrupt.safe_point()  # nothing asked: nothing raised
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("cancelled")

    with interrupt.watching(check):
        interrupt.safe_point()
        with pytest.raises(RuntimeError, match="cancelled"):
            interrupt.safe_point()
    interrupt.safe_point()  # outside the block the check is gone
    assert len(calls) == 2
