"""Benchmark contamination of a training set, by three methods reported separately.

1. ngram: word n-grams (lowercase, punctuation stripped) like GPT-3 and lm-eval: 13-grams over the
   item's text; a field or item of 8-12 words must appear whole. Grams shared by more than a few
   items of the benchmarks (templates such as "which of the following is") are not evidence.
2. substring: the GPT-4 report's method: the item's text reduced to letters and digits, three
   seeded 50-character substrings (the whole text when shorter); any one found in a training row
   (reduced the same way) is a match. Aho-Corasick, so one pass per row whatever the item count.
3. embedding (optional): cosine similarity of mean-pooled embeddings from a local sentence-embedding
   model, for paraphrases. Never downloads; skipped with a note when no model is given.

Training rows stream through `Index.scan` one at a time: the set need not fit in memory.
"""

from __future__ import annotations

import random
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from evals.benchmarks import Benchmark

WORD = re.compile(r"[^\W_]+")
N = 13          # GPT-3 / lm-eval decontamination n
SHORT_MIN = 8   # a field or item of 8..12 words counts when it appears whole
SUB_LEN = 50    # GPT-4 report: three 50-character substrings per item
SUB_COUNT = 3
SUB_MIN = 20    # shorter letter-and-digit texts are too generic to be evidence
MAX_SHARED = 4  # a gram found in more items than this is a template, not evidence
MAX_ROWS_LISTED = 20
EMBED_THRESHOLD = 0.92


def words(text: str) -> list[str]:
    return WORD.findall(text.casefold())


def letters_digits(text: str) -> str:
    return "".join(WORD.findall(text.casefold()))


def _grams(ws: list[str], n: int):
    return zip(*(ws[k:] for k in range(n)))


@dataclass
class Found:
    rows: list[int] = field(default_factory=list)
    evidence: str = ""


class Index:
    """The benchmarks' n-grams and substrings, ready to scan training rows against."""

    def __init__(self, benchmarks: list[Benchmark], seed: int = 0):
        import ahocorasick

        self.benchmarks = benchmarks
        grams: dict[int, set[tuple[int, int]]] = {}
        short: dict[int, list[tuple[int, int, tuple[str, ...]]]] = {}
        self.automaton = ahocorasick.Automaton()
        subs: dict[str, set[tuple[int, int]]] = {}
        for b, bench in enumerate(benchmarks):
            for i, fields in enumerate(bench.items):
                stream = words(" ".join(fields))
                for g in _grams(stream, N):
                    grams.setdefault(hash(g), set()).add((b, i))
                wholes = [ws for ws in map(words, fields) if SHORT_MIN <= len(ws) < N]
                if SHORT_MIN <= len(stream) < N:
                    wholes.append(stream)
                for ws in wholes:
                    short.setdefault(hash(tuple(ws[:SHORT_MIN])), []).append((b, i, tuple(ws)))
                text = letters_digits(" ".join(fields))
                if len(text) < SUB_MIN:
                    continue
                rng = random.Random(seed * 1_000_003 + zlib.crc32(f"{bench.name}/{i}".encode()))
                starts = rng.sample(range(len(text) - SUB_LEN + 1), SUB_COUNT) if len(text) >= SUB_LEN + SUB_COUNT else [0]
                for s in starts:
                    subs.setdefault(text[s:s + SUB_LEN], set()).add((b, i))
        self.grams = {h: items for h, items in grams.items() if len(items) <= MAX_SHARED}
        self.template_grams = len(grams) - len(self.grams)
        self.short = short
        for sub, items in subs.items():
            if len(items) <= MAX_SHARED:
                self.automaton.add_word(sub, (sub, tuple(items)))
        self.automaton.make_automaton()
        self.found: dict[tuple[int, int, str], Found] = {}
        self.rows = 0

    def _hit(self, b: int, i: int, method: str, row: int, evidence: str) -> None:
        f = self.found.setdefault((b, i, method), Found(evidence=evidence))
        if len(f.rows) < MAX_ROWS_LISTED and (not f.rows or f.rows[-1] != row):
            f.rows.append(row)

    def scan(self, row: int, text: str) -> bool:
        """Check one training row; True when it matched any benchmark item."""
        self.rows += 1
        hit = False
        ws = words(text)
        if len(ws) >= N:
            hashes = list(map(hash, _grams(ws, N)))
            for h in self.grams.keys() & set(hashes):
                j = hashes.index(h)
                for b, i in self.grams[h]:
                    self._hit(b, i, "ngram", row, " ".join(ws[j:j + N]))
                hit = True
        if len(ws) >= SHORT_MIN:
            hashes = list(map(hash, _grams(ws, SHORT_MIN)))
            for h in self.short.keys() & set(hashes):
                starts = [j for j, x in enumerate(hashes) if x == h]
                for b, i, whole in self.short[h]:
                    if any(tuple(ws[j:j + len(whole)]) == whole for j in starts):
                        self._hit(b, i, "ngram", row, " ".join(whole))
                        hit = True
        for _end, (sub, items) in self.automaton.iter(letters_digits(text)):
            for b, i in items:
                self._hit(b, i, "substring", row, sub)
            hit = True
        return hit

    def report(self, seconds: float, extra: dict[tuple[int, int, str], Found] | None = None) -> dict:
        """The JSON report: per benchmark, items, contaminated items, rate and every match."""
        found = {**self.found, **(extra or {})}
        out = {"train_rows": self.rows, "seconds": round(seconds, 3), "benchmarks": {}}
        for b, bench in enumerate(self.benchmarks):
            matches = sorted(({"item": i, "train_rows": f.rows, "method": m, "evidence": f.evidence}
                              for (bb, i, m), f in found.items() if bb == b), key=lambda x: (x["item"], x["method"]))
            items = {m["item"] for m in matches}
            by_method = {m: len({x["item"] for x in matches if x["method"] == m}) for m in ("ngram", "substring", "embedding")}
            out["benchmarks"][bench.name] = {
                "items": len(bench.items), "contaminated": len(items),
                "rate": round(len(items) / len(bench.items), 6) if bench.items else 0.0,
                "by_method": by_method, "source": bench.source, "matches": matches,
            }
        return out

def check(rows: Callable[[], Iterable[tuple[int, str]]], benchmarks: list[Benchmark],
          embedding_model: Path | None = None, progress=None) -> tuple[dict, set[int]]:
    """Scan (row number, text) pairs against the benchmarks; returns the report and every matching row.

    `rows` is called once per pass (twice with an embedding model), so the rows can stream from disk.
    The report lists at most 20 rows per item; the returned set has all of them."""
    t0 = time.time()
    index = Index(benchmarks)
    bad: set[int] = set()
    for row, text in rows():
        if index.scan(row, text):
            bad.add(row)
        if progress is not None:
            progress(1)
    extra, note = None, "no sentence-embedding model given (--embedding-model PATH); paraphrase check skipped"
    if embedding_model is not None:
        if not (Path(embedding_model) / "config.json").is_file():
            note = f"no model at {embedding_model} (a folder with config.json); paraphrase check skipped"
        else:
            extra = embedding_matches(Path(embedding_model), benchmarks, rows())
            bad |= {r for f in extra.values() for r in f.rows}
            note = (f"paraphrases by cosine >= {EMBED_THRESHOLD} with {embedding_model} (an unmeasured method: "
                    f"its matches are leads to read, not findings)")
    report = index.report(time.time() - t0, extra)
    report["embedding"] = note
    return report, bad


# ---- method 3: paraphrases by embedding ----------------------------------------------------------

def embedding_matches(model_dir: Path, benchmarks: list[Benchmark], rows: Iterable[tuple[int, str]],
                      threshold: float = EMBED_THRESHOLD, batch: int = 64) -> dict[tuple[int, int, str], Found]:
    """Items whose embedding is within `threshold` cosine of a training row's (mean pooling)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> torch.Tensor:
        enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)

    keys = [(b, i) for b, bench in enumerate(benchmarks) for i in range(len(bench.items))]
    texts = [" ".join(benchmarks[b].items[i]) for b, i in keys]
    items = torch.cat([embed(texts[k:k + batch]) for k in range(0, len(texts), batch)]) if texts else torch.empty(0)
    found: dict[tuple[int, int, str], Found] = {}
    chunk: list[tuple[int, str]] = []

    def flush() -> None:
        sims = embed([t for _, t in chunk]) @ items.T
        for r, c in (sims >= threshold).nonzero().tolist():
            b, i = keys[c]
            f = found.setdefault((b, i, "embedding"), Found(evidence=f"cosine {sims[r, c].item():.3f} with row {chunk[r][0]}"))
            if len(f.rows) < MAX_ROWS_LISTED:
                f.rows.append(chunk[r][0])
        chunk.clear()

    for pair in rows:
        chunk.append(pair)
        if len(chunk) == batch:
            flush()
    if chunk:
        flush()
    return found
