"""Load the request's datasets, normalise them, report malformed rows, drop duplicates, split.

Local files (json, jsonl, parquet, csv) or Hub dataset repos through the Hub protocol.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from factory.config import DATA_SUFFIXES, DatasetSpec, Request
from factory.errors import UserError
from factory.formats import Malformed, Sample, normalise
from factory.hub import Hub


@dataclass
class DatasetReport:
    source: str
    rows: int = 0
    used: int = 0
    malformed: int = 0
    duplicates: int = 0
    examples: list[str] = field(default_factory=list)  # "row 12: missing field 'output'"
    revision: str | None = None  # the Hub commit the files came from (None for local files)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("source", "rows", "used", "malformed", "duplicates", "examples", "revision")}


@dataclass
class Prepared:
    train: list[Sample]
    eval: list[Sample]
    reports: list[DatasetReport]


def read_rows(path: Path) -> Iterator[object]:
    """Rows of a data file, in order. A line that is not JSON is yielded as a Malformed instance."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _json_lines(path)
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            if "\n{" in path.read_text(encoding="utf-8")[:100_000]:  # JSON Lines under a .json name
                yield from _json_lines(path)
                return
            raise UserError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"data": [...]} / {"train": [...]}
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON array of rows (or JSON Lines), got {type(data).__name__}")
        yield from data
    elif suffix == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as f:
            yield from csv.DictReader(f)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    else:
        raise UserError(f"{path}: unsupported data file type; use one of {', '.join(DATA_SUFFIXES)}")


def _json_lines(path: Path) -> Iterator[object]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    yield Malformed(f"line {n} is not JSON ({exc.msg})", raw=line)


def repo_data_files(root: Path) -> list[Path]:
    """The data files of a dataset repo snapshot, in a stable order."""
    return sorted(p for p in root.rglob("*") if p.suffix in DATA_SUFFIXES and not p.name.startswith("."))


def dataset_files(spec: DatasetSpec, hub: Hub) -> tuple[list[Path], str | None]:
    """The files to read for spec, and the Hub revision they came from (None for local files)."""
    if spec.is_local:
        path = Path(spec.path).expanduser()
        if not path.is_file():
            raise UserError(f"dataset file '{spec.path}' does not exist")
        return [path], None
    root, revision = hub.snapshot(spec.path, "dataset")
    files = repo_data_files(root)
    if spec.name:
        files = [p for p in files if spec.name in p.relative_to(root).parts]
    chosen = [p for p in files if p.stem.split("-")[0] == spec.split or p.parent.name == spec.split]
    if not chosen and spec.split == "train" and len(files) == 1:
        chosen = files
    if not chosen:
        names = ", ".join(p.relative_to(root).as_posix() for p in files) or "none"
        raise UserError(f"dataset '{spec.path}' has no files for split '{spec.split}' (files: {names})")
    return chosen, revision


def load_samples(spec: DatasetSpec, hub: Hub, report: DatasetReport) -> Iterator[Sample]:
    files, report.revision = dataset_files(spec, hub)
    for path in files:
        for n, row in enumerate(read_rows(path), 1):
            report.rows += 1
            try:
                if isinstance(row, Malformed):
                    raise row
                yield normalise(row, spec)
            except Malformed as exc:
                report.malformed += 1
                if len(report.examples) < 10:
                    report.examples.append(f"{path.name} row {n}: {exc}")


def prepare(request: Request, hub: Hub) -> Prepared:
    """All datasets normalised, mixed, de-duplicated and split (seeded)."""
    seen: set[str] = set()
    samples: list[Sample] = []
    reports = []
    for spec in request.datasets:
        report = DatasetReport(source=spec.path if not spec.is_local else Path(spec.path).name)
        for sample in load_samples(spec, hub, report):
            key = sample.key()
            if key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            samples.append(sample)
            report.used += 1
        reports.append(report)
        if report.rows == 0:
            raise UserError(f"dataset '{spec.path}' has no rows")
        bad = report.malformed / report.rows
        if bad > request.max_malformed_fraction:
            shown = "\n    ".join(report.examples)
            raise UserError(
                f"dataset '{spec.path}': {report.malformed} of {report.rows} rows ({bad:.1%}) are malformed, "
                f"more than max_malformed_fraction={request.max_malformed_fraction}. First problems:\n    {shown}\n"
                f"  Fix the rows, map the columns (field_*, field_messages, roles), or raise max_malformed_fraction."
            )
    rng = random.Random(request.seed)
    rng.shuffle(samples)
    n_eval = int(request.val_set_size) if request.val_set_size >= 1 else int(round(request.val_set_size * len(samples)))
    if n_eval >= len(samples):
        raise UserError(f"val_set_size={request.val_set_size} leaves no training rows (only {len(samples)} rows)")
    return Prepared(train=samples[n_eval:], eval=samples[:n_eval], reports=reports)
