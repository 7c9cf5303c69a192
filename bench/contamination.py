"""Contamination check speed: index the four main benchmarks, scan 10k / 50k / 100k training rows.

    .venv/bin/python bench/contamination.py [--shared ../shared/data]

Training rows are the real Alpaca and ShareGPT rows of ../shared/data, cycled (each copy numbered so
no two rows are equal) into a JSONL file that is streamed from disk, as `factory contamination` does.
Target: 100k rows in at most 60 s on two cores, cost linear in rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py shares its name with the stdlib module: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import platform
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--sizes", default="10000,50000,100000")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ["FACTORY_BENCHMARKS_DIR"] = str(args.shared / "benchmarks")
    from evals.benchmarks import load_benchmark
    from evals.contamination import Index, check
    from factory.data.decontaminate import rows_of

    names = ["gsm8k", "mmlu", "arc_easy", "arc_challenge", "truthfulqa"]
    t = time.time()
    benchmarks = [load_benchmark(n) for n in names]
    load_s = time.time() - t
    t = time.time()
    Index(benchmarks)
    index_s = time.time() - t
    sources = sorted((args.shared / "sft_alpaca").iterdir()) + sorted((args.shared / "chat_sharegpt").iterdir())
    base = [row for _, row in rows_of(sources, None)()]
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"benchmarks: {', '.join(f'{b.name} {len(b.items)}' for b in benchmarks)} items; "
          f"loading {load_s:.2f}s (once, not in the timings below), indexing {index_s:.2f}s")
    print(f"training rows: {len(base)} real rows (mean {sum(map(len, base)) / len(base):.0f} chars), cycled\n")
    print("seconds: one `check` call, which indexes the already-loaded benchmarks and then streams the rows from disk; "
          "scan-only subtracts the indexing time measured above")
    print(f"{'rows':>8} {'seconds':>8} {'rows/s':>8} {'scan-only us/row':>16} {'flagged rows':>12}")
    work = Path(tempfile.mkdtemp(prefix="contam-bench-"))
    for n in (int(s) for s in args.sizes.split(",")):
        path = work / f"train-{n}.jsonl"
        with path.open("w") as f:
            for i in range(n):
                f.write(json.dumps({"text": f"{base[i % len(base)]} (copy {i // len(base)})"}) + "\n")
        t = time.time()
        report, bad = check(rows_of([path], None), benchmarks)
        s = time.time() - t
        print(f"{n:>8} {s:>8.1f} {n / s:>8.0f} {(s - index_s) / n * 1e6:>16.0f} {len(bad):>12}", flush=True)
        path.unlink()


if __name__ == "__main__":
    main()
