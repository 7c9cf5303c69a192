"""Training's memory on a large dataset: samples read from disk as they are batched (now) against the
same samples held as Python lists (how training read them before), in the same run.

    .venv/bin/python bench/train_memory.py [--rows 1000000] [--sequence-len 2048]

Rows: the shared Alpaca files repeated with " (variant K)", as bench/data_prep.py writes them. The base:
the embedded tiny Llama's shape with Phi-3-mini's tokenizer (ChatML markers added), so the token counts
are a real tokenizer's. `factory prepare` tokenises them once (its cache entry and the run folder's links
are shared by what follows); then, each in a fresh process, peak RSS (the process's maximum resident
set, in MB) of:

- lists (before): the run's train samples read into Encoded lists, packed, the bins built from them;
- lazy (now): factory.train's Rows over the memory-mapped Samples, packed from lengths, and the first
  500 training rows collated into batches;
- `factory run` with max_steps 2: the whole job (cache hit, packing, two optimizer steps, merge, card,
  publish to the local hub); its largest process.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def data_prep():
    spec = importlib.util.spec_from_file_location("data_prep", Path(__file__).parent / "data_prep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_base(dest: Path) -> None:
    from factory.demo.tiny import CHATML, build_model

    tok = data_prep().load_tokenizer()
    tok.chat_template = CHATML
    model = build_model(len(tok))
    model.config.max_position_embeddings = 4096
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    (dest / "README.md").write_text("---\nlicense: apache-2.0\n---\n# bench base\n")


def run_folder(home: Path) -> Path:
    return next(home.glob("runs/*/data/encoded"))


def child(kind: str, home: Path, sequence_len: int) -> dict:
    from factory.data import encoded_store
    from factory.train.packing import FlattenCollator, pack, pack_lengths
    from factory.train.train import Rows, epoch_order

    _, train, _ = encoded_store.load(run_folder(home))
    t = time.perf_counter()
    if kind == "lists":
        samples = list(train)
        bins = pack(samples, sequence_len, 0).bins
        rows = [[samples[i] for i in b] for b in bins]
        n = len(rows)
    else:
        bins = pack_lengths(train.lengths.tolist(), sequence_len, 0).bins
        rows = Rows(train, bins, epoch_order(len(bins), 1, None, 0))
        collate = FlattenCollator()
        for k in range(min(500, len(rows))):
            collate([rows[k]])
        n = len(rows)
    return {"seconds": time.perf_counter() - t, "bins": n, "samples": len(train), "tokens": train.tokens}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sequence-len", type=int, default=2048)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        result = child(args.child, Path(args.home), args.sequence_len)
        print("RESULT " + json.dumps({**result, "peak_mb": peak_mb()}))
        return
    import yaml

    work = Path(tempfile.mkdtemp(prefix="train-memory-"))
    env = {**os.environ, "FACTORY_HOME": str(work / "home"), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")
    write_base(work / "base")
    data_prep().write_rows("alpaca", args.rows, work / "rows.jsonl")
    request = {"base_model": str(work / "base"), "datasets": [{"path": str(work / "rows.jsonl"), "type": "alpaca"}],
               "sequence_len": args.sequence_len, "chat_template": "chatml", "adapter": "lora", "lora_r": 4,
               "lora_target_linear": True,
               "max_steps": 2, "micro_batch_size": 1, "val_set_size": 0, "save_steps": 1000, "bf16": False,
               "hub_model_id": "bench/train-memory"}
    (work / "request.yaml").write_text(yaml.safe_dump(request))
    cli = [sys.executable, "-m", "factory"]
    t = time.perf_counter()
    p = subprocess.run([*cli, "prepare", str(work / "request.yaml")], env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"factory prepare failed:\n{p.stderr[-3000:]}")
    print(f"{args.rows:,} Alpaca rows prepared in {time.perf_counter() - t:.0f} s (sequence_len {args.sequence_len})")
    print(f"{'what':38} {'seconds':>8} {'peak MB':>8}")
    for kind, label in (("lists", "lists (before): samples as lists"), ("lazy", "lazy (now): Rows over Samples")):
        p = subprocess.run([sys.executable, __file__, "--child", kind, "--home", str(work / "home"),
                            "--sequence-len", str(args.sequence_len)], env=env, capture_output=True, text=True)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{kind} failed:\n{p.stderr[-3000:]}")
        r = json.loads(line[7:])
        print(f"{label:38} {r['seconds']:>8.1f} {r['peak_mb']:>8,.0f}   ({r['samples']:,} samples, "
              f"{r['tokens']:,} tokens, {r['bins']:,} packed rows)", flush=True)
    t = time.perf_counter()
    with open(work / "run.log", "w") as log:
        p = subprocess.Popen([*cli, "run", str(work / "request.yaml")], env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own peak (its largest process), not an earlier one's
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"factory run failed:\n{(work / 'run.log').read_text()[-3000:]}")
    print(f"{'factory run, max_steps 2':38} {time.perf_counter() - t:>8.1f} {usage.ru_maxrss / 1024:>8,.0f}")

if __name__ == "__main__":
    main()
