"""Packing efficiency and time: the factory's best-fit-decreasing vs first-fit, on real data.

    python bench/packing.py [--shared ../shared/data]

Tokenises the Alpaca and ShareGPT files in ../shared/data with the real GPT-NeoX-20B tokenizer
and prints, per sequence_len, rows, efficiency (real tokens / slots) and packing time.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from factory.packing import best_fit_decreasing


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


def texts(shared: Path) -> list[str]:
    out = []
    for p in sorted((shared / "sft_alpaca").glob("*")):
        rows = json.loads(p.read_text()) if p.suffix == ".json" else [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
        out += [" ".join(str(v) for v in r.values() if isinstance(v, str)) for r in rows]
    for p in sorted((shared / "chat_sharegpt").glob("*.json")):
        out += [" ".join(t["value"] for t in r["conversations"]) for r in json.loads(p.read_text())]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    args = ap.parse_args()
    from tokenizers import Tokenizer

    shared = Path(args.shared)
    tok = Tokenizer.from_file(str(shared / "tokenizers/gpt-neox-20b/20B_tokenizer.json"))
    lengths = [len(e.ids) + 1 for e in tok.encode_batch(texts(shared))]
    print(f"machine: {platform.machine()} {platform.processor()}; samples: {len(lengths)}; tokens: {sum(lengths):,}")
    print(f"{'seq_len':>7} {'algorithm':>18} {'rows':>6} {'efficiency':>10} {'seconds':>8}")
    for cap in (512, 2048, 4096):
        fit = [n for n in lengths if n <= cap]
        for name, fn in (("best-fit-decr.", best_fit_decreasing), ("first-fit", first_fit)):
            t = time.perf_counter()
            bins = fn(fit, cap)
            dt = time.perf_counter() - t
            print(f"{cap:>7} {name:>18} {len(bins):>6} {sum(fit) / (len(bins) * cap):>10.4f} {dt:>8.3f}")


if __name__ == "__main__":
    main()
