"""The factory's side of the contamination check: training text from files, Hub ids or prepared samples,
and the request's policy (warn, block before any compute, or drop the rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

from factory.config import DATA_SUFFIXES, DatasetSpec, Request
from factory.errors import UserError
from factory.formats import Malformed, Sample, normalise
from factory.hub import Hub
from factory.progress import Event, Reporter


def sample_text(sample: Sample) -> str:
    return sample.text if sample.text is not None else "\n".join(c for _, c in sample.messages)


def row_strings(row: object) -> str:
    """Every string inside a row, in order: any format, no column mapping needed."""
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        return "\n".join(filter(None, (row_strings(v) for v in row.values())))
    if isinstance(row, (list, tuple)):
        return "\n".join(filter(None, (row_strings(v) for v in row)))
    return ""


def data_files(data: str, hub: Hub) -> list[Path]:
    """A local file, a folder of data files, or a Hub dataset id (every data file of the repo)."""
    p = Path(data).expanduser()
    if p.is_file():
        return [p]
    from factory.data import repo_data_files

    if p.is_dir():
        files = repo_data_files(p)
    elif "/" in data and hub.exists(data, "dataset"):
        files = repo_data_files(hub.snapshot(data, "dataset")[0])
    else:
        raise UserError(f"--data {data}: no such file or folder, and no dataset '{data}' in the {hub.name} hub")
    if not files:
        raise UserError(f"--data {data}: holds no {', '.join(DATA_SUFFIXES)} files")
    return files


def rows_of(files: list[Path], fmt: str | None) -> Callable[[], Iterator[tuple[int, str]]]:
    """(row number, text) for every row of the files; with a format, only the text the factory would train on."""
    from factory.data import read_rows

    def rows() -> Iterator[tuple[int, str]]:
        n = 0
        for path in files:
            spec = DatasetSpec(path=str(path), type=fmt) if fmt else None
            for row in read_rows(path):
                try:
                    if isinstance(row, Malformed):
                        raise row
                    text = sample_text(normalise(row, spec)) if spec else row_strings(row)
                except Malformed:
                    text = ""
                yield n, text
                n += 1

    return rows


def load_benchmarks(specs: list[str], fields: list[str] | None):
    from evals.benchmarks import BenchmarkError, load_benchmark

    from factory.home import placeholders

    for key, value in placeholders().items():  # the same placeholders as the eval task files
        specs = [s.replace("{" + key + "}", value) for s in specs]
    try:
        return [load_benchmark(s, tuple(fields) if fields else None) for s in specs]
    except BenchmarkError as exc:
        raise UserError(str(exc)) from None


def summary_line(report: dict) -> str:
    return "; ".join(f"{name}: {b['contaminated']}/{b['items']} items ({b['rate']:.2%})"
                     for name, b in report["benchmarks"].items())


def apply_policy(request: Request, train: list[Sample], evalset: list[Sample], reporter: Reporter,
                 ) -> tuple[list[Sample], list[Sample], dict | None]:
    """Check the prepared samples; warn, stop (block) or drop what overlaps. Returns the kept samples."""
    spec = request.contamination
    if not spec.benchmarks:
        return train, evalset, None
    from evals.contamination import check

    benchmarks = load_benchmarks(spec.benchmarks, spec.fields)
    samples = train + evalset
    report, bad = check(lambda: ((i, sample_text(s)) for i, s in enumerate(samples)), benchmarks,
                        Path(spec.embedding_model).expanduser() if spec.embedding_model else None)
    report["policy"] = spec.policy
    report["rows_flagged"] = len(bad)
    line = summary_line(report)
    if bad and spec.policy == "block":
        examples = [f"{n}: item {m['item']} ({m['method']}) \"{m['evidence'][:80]}\""
                    for n, b in report["benchmarks"].items() for m in b["matches"][:2]]
        raise UserError(f"contamination: {len(bad)} training rows overlap the benchmarks ({line}); policy is block, "
                        "so nothing was trained.\n  " + "\n  ".join(examples) +
                        "\n  Remove the rows, or set contamination.policy: drop to train without them.")
    if bad and spec.policy == "drop":
        n_train = len(train)
        train = [s for i, s in enumerate(train) if i not in bad]
        evalset = [s for j, s in enumerate(evalset) if n_train + j not in bad]
        report["rows_dropped"] = len(bad)
    reporter.emit(Event("data", f"contamination: {line}; {len(bad)} rows flagged"
                        + {"warn": " (policy warn: kept)", "drop": " and dropped", "block": ""}[spec.policy]))
    return train, evalset, report
