"""Packing efficiency and time: the factory's best-fit-decreasing vs first-fit vs TRL's bfd, on real data.

    python bench/packing.py [--shared ../shared/data]

Tokenises the Alpaca and ShareGPT files in ../shared/data with the real GPT-NeoX-20B tokenizer
and prints, per sequence_len, rows, efficiency (real tokens / slots) and packing time.

Every algorithm starts from the same input, a Python list of token-id lists, and its time includes
everything from that list to the rows: the factory's and first-fit's include taking the lengths;
"TRL bfd" includes building the datasets.Dataset its pack_dataset needs, and "TRL bfd, pack only"
times pack_dataset alone on a Dataset built beforehand.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py shares its name with the stdlib module: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import platform
import time

from factory.train.packing import best_fit_decreasing


def first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    bins, space = [], []
    for i, n in enumerate(lengths):
        for b, s in enumerate(space):
            if n <= s:
                bins[b].append(i)
                space[b] -= n
                break
        else:
            bins.append([i])
            space.append(capacity - n)
    return bins


def texts(shared: Path, sharegpt: bool = True) -> list[str]:
    out = []
    for p in sorted((shared / "sft_alpaca").glob("*")):
        rows = json.loads(p.read_text()) if p.suffix == ".json" else [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
        out += [" ".join(str(v) for v in r.values() if isinstance(v, str)) for r in rows]
    for p in sorted((shared / "chat_sharegpt").glob("*.json")) if sharegpt else []:
        out += [" ".join(t["value"] for t in r["conversations"]) for r in json.loads(p.read_text())]
    return out


def trl_dataset(seqs: list[list[int]]):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": seqs})


def trl_pack(ds, capacity: int) -> int:
    """Rows TRL's pack_dataset(strategy="bfd") makes of a Dataset of sequences."""
    from trl import pack_dataset

    return len(pack_dataset(ds, capacity, strategy="bfd"))


def timed(fn) -> tuple[int, float]:
    t = time.perf_counter()
    rows = fn()
    return rows, time.perf_counter() - t


def algorithms(seqs: list[list[int]], cap: int) -> list[tuple[str, int, float]]:
    """(name, rows, seconds) per algorithm, each from the same list of token-id lists."""
    out = [("factory BFD", *timed(lambda: len(best_fit_decreasing([len(s) for s in seqs], cap)))),
           ("first-fit", *timed(lambda: len(first_fit([len(s) for s in seqs], cap)))),
           ("TRL bfd", *timed(lambda: trl_pack(trl_dataset(seqs), cap)))]
    ds = trl_dataset(seqs)
    out.append(("TRL bfd, pack only", *timed(lambda: trl_pack(ds, cap))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    args = ap.parse_args()
    import os

    import datasets
    from tokenizers import Tokenizer

    datasets.disable_progress_bars()
    shared = Path(args.shared)
    tok = Tokenizer.from_file(str(shared / "tokenizers/gpt-neox-20b/20B_tokenizer.json"))
    alpaca_only = len(texts(shared, sharegpt=False))
    lengths = [len(e.ids) + 1 for e in tok.encode_batch(texts(shared))]
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}; tokenizer: gpt-neox-20b")
    print(f"samples: {len(lengths)} ({alpaca_only} Alpaca + {len(lengths) - alpaca_only} ShareGPT), "
          f"tokens: {sum(lengths):,}; samples longer than seq_len are left out at that seq_len\n")
    trl_pack(trl_dataset([[1] * 3, [1] * 2]), 4)  # import datasets/trl before timing anything
    print(f"{'data':9} {'seq_len':>7} {'algorithm':>20} {'rows':>6} {'efficiency':>10} {'seconds':>8}")
    for data, pool in (("alpaca", lengths[:alpaca_only]), ("all", lengths)):
        for cap in (512, 2048, 4096):
            seqs = [[1] * n for n in pool if n <= cap]
            real = sum(map(len, seqs))
            for name, rows, dt in algorithms(seqs, cap):
                print(f"{data:9} {cap:>7} {name:>20} {rows:>6} {real / (rows * cap):>10.4f} {dt:>8.3f}")
    big = [[1] * n for n in (lengths * (100_000 // len(lengths) + 1))[:100_000] if n <= 2048]
    real = sum(map(len, big))
    print(f"\n{len(big):,} samples (the real lengths repeated), seq_len 2048, each from the same list of token lists:")
    for name, rows, dt in algorithms(big, 2048):
        if name != "first-fit":  # quadratic: minutes at this size
            print(f"  {name:20} {rows} rows, efficiency {real / (rows * 2048):.4f}, {dt:.2f}s")

if __name__ == "__main__":
    main()
