"""A preference run's data: every dataset's rows read as pairs (or KTO completions), de-duplicated, split into
training and held-out pairs (seeded), tokenised the way TRL does, and held to sequence_len.

Tokenising: the prompt rendered with the chat template and a generation prompt, then the prompt with each answer;
the answer's tokens are what follows the longest prefix both share with the prompt (TRL's rule, so the losses
match TRL's on the same rows). A prompt given as raw text (prompt_format) is tokenised as text and each answer
ends with the end-of-sequence token, as TRL does for text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from factory.base.errors import UserError
from factory.data.data import DatasetReport, _bound, check_report, digest, read_rows, split_parts, split_rows
from factory.data.formats import Malformed
from factory.data.pairs import Pair, SamePair, read
from factory.request.config import Request


@dataclass
class PairReport(DatasetReport):
    same: int = 0  # pairs whose chosen equals their rejected: dropped

    def as_dict(self) -> dict:
        return {**super().as_dict(), "same_answer_pairs": self.same}


@dataclass
class Tokens:
    """One training example in tokens: the prompt and the answers that follow it (rejected None for KTO)."""
    prompt: list[int]
    chosen: list[int]
    rejected: list[int] | None = None
    label: bool | None = None

    def as_dict(self) -> dict:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected, "label": self.label}

    def longest(self) -> int:
        return len(self.prompt) + max(len(self.chosen), len(self.rejected or []))


@dataclass
class PairSet:
    train: list[Tokens]  # KTO: unpaired completions
    held_out: list[Tokens]  # pairs, to judge
    reports: list[PairReport]
    counts: dict = field(default_factory=dict)


def load_pairs(request: Request, files: list[tuple[list[Path], str | None]]) -> tuple[list[Pair], list[PairReport]]:
    """Every dataset's usable pairs in load order, exact duplicates dropped, each dataset's rows counted and judged
    like an SFT dataset's (malformed rows, max_malformed_fraction); a same-answer pair is counted apart."""
    pairs: list[Pair] = []
    reports: list[PairReport] = []
    seen: set[bytes] = set()
    for spec, (paths, revision) in zip(request.datasets, files):
        report = PairReport(source=spec.path if not spec.is_local else Path(spec.path).name, revision=revision)
        reports.append(report)
        mine: list[Pair] = []
        for path in paths:
            for n, row in enumerate(read_rows(path, report.encodings), 1):
                report.rows += 1
                try:
                    if isinstance(row, Malformed):
                        raise row
                    found = read(row, spec)
                except SamePair:
                    report.same += 1
                    continue
                except Malformed as exc:
                    report.malformed_row(f"{path.name} row {n}", exc)
                    continue
                mine.append(found)
        _, lo, hi = split_parts(spec.split)  # train[:1000], train[10%:]: a slice of the usable rows
        if lo is not None:
            start, stop, _ = slice(_bound(lo, len(mine)), _bound(hi, len(mine))).indices(len(mine))
            mine = mine[start:stop]
        for found in mine:
            key = digest(found.sample())
            if key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            report.used += 1
            pairs.append(found)
        if report.rows and report.same == report.rows:
            raise UserError(f"dataset '{spec.path}': in every one of its {report.rows} rows chosen equals rejected; "
                            "there is no preference to learn")
        check_report(report, spec.path, spec.type, request.max_malformed_fraction)
    return pairs, reports


def unpaired(tokens: Tokens) -> list[Tokens]:
    """KTO from a pair (TRL's unpairing): the chosen answer is desirable, the rejected one undesirable."""
    if tokens.rejected is None:
        return [tokens]
    return [Tokens(tokens.prompt, tokens.chosen, None, True), Tokens(tokens.prompt, tokens.rejected, None, False)]


def paired(items: list[Tokens]) -> list[Tokens]:
    """Held-out examples as pairs to judge: pairs as they are; KTO completions paired by their prompt (a desirable
    with an undesirable one); a completion left without a partner is not judged."""
    out, waiting = [], {}
    for t in items:
        if t.rejected is not None:
            out.append(t)
            continue
        key = tuple(t.prompt)
        slot = waiting.setdefault(key, ([], []))
        slot[0 if t.label else 1].append(t)
        if slot[0] and slot[1]:
            good, bad = slot[0].pop(0), slot[1].pop(0)
            out.append(Tokens(t.prompt, good.chosen, bad.chosen))
    return out


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenise(pair: Pair, tokenizer, render: Callable) -> Tokens:
    """The pair in tokens (see the module's note); render: data.chat.in_process or a BoundedRenderer."""
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    answers = [pair.chosen] + ([pair.rejected] if pair.rejected is not None else [])
    if pair.raw_prompt is not None:
        eos = tokenizer.eos_token or ""
        prompt = ids(pair.raw_prompt)
        full = [ids(pair.raw_prompt + a + ("" if a.endswith(eos) else eos)) for a in answers]
    else:
        turns = [{"role": r, "content": c} for r, c in pair.prompt]
        prompt = ids(render(turns, add_generation_prompt=True))
        full = [ids(render(turns + [{"role": "assistant", "content": a}], add_generation_prompt=False)) for a in answers]
    cut = min(common_prefix(prompt, f) for f in full)
    return Tokens(prompt[:cut], full[0][cut:], full[1][cut:] if len(full) > 1 else None, pair.label)


def fit(tokens: Tokens, request: Request) -> Tokens | None:
    """The example within sequence_len (each sequence is prompt + one answer): dropped (None) when longer, or with
    its answers cut at the end under excess_length_strategy: truncate; None as well when an answer is empty."""
    limit = request.sequence_len
    if tokens.longest() > limit:
        if request.excess_length_strategy == "drop" or len(tokens.prompt) >= limit:
            return None
        room = limit - len(tokens.prompt)
        tokens = Tokens(tokens.prompt, tokens.chosen[:room],
                        None if tokens.rejected is None else tokens.rejected[:room], tokens.label)
    if not tokens.chosen or (tokens.rejected is not None and not tokens.rejected):
        return None
    return tokens


def prepare(request: Request, pairs: list[Pair], reports: list[PairReport], tokenizer, render: Callable,
            drop: set[int] = frozenset(), progress: Callable[[int, int], None] | None = None) -> PairSet:
    """Split (seeded, val_set_size held out), tokenise and fit every pair; `drop`: rows (load order) the
    contamination policy removes."""
    from factory.base import interrupt

    train_rows, held_rows = split_rows(len(pairs), request)
    counts = {"over_long": 0, "contamination_dropped": len(drop)}

    def encoded(rows: list[int]) -> list[Tokens]:
        out = []
        for k, i in enumerate(rows):
            if not k & 63:
                interrupt.safe_point()
                if progress:
                    progress(k, len(rows))
            if i in drop:
                continue
            fitted = fit(tokenise(pairs[i], tokenizer, render), request)
            if fitted is None:
                counts["over_long"] += 1
                continue
            out.append(fitted)
        return out

    held, train = paired(encoded(held_rows)), encoded(train_rows)
    if request.rl == "kto":
        train = [u for t in train for u in unpaired(t)]
    if not train:
        raise UserError("no training pairs are left after dropping those longer than sequence_len "
                        f"({request.sequence_len} tokens per prompt + answer); raise sequence_len or use "
                        "excess_length_strategy: truncate")
    return PairSet(train, held, reports, counts)
