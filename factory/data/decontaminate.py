"""The factory's side of the contamination check: training text from files, Hub ids or prepared samples,
and the request's policy (warn, block before any compute, or drop the rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

from factory.request.config import DATA_SUFFIXES, DatasetSpec, Request
from factory.base.errors import UserError
from factory.data.formats import Malformed, Sample, normalise
from factory.hub.protocol import Hub
from factory.base.progress import Event, Reporter


def sample_text(sample: Sample) -> str:
    if sample.text is not None:
        return sample.text
    return "\n".join([c for _, c in sample.messages] + [t for _, t in sample.thinking])


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
    from factory.data.data import repo_data_files

    if p.is_dir():
        files = repo_data_files(p)
    elif "/" in data and hub.exists(data, "dataset"):
        files = repo_data_files(hub.snapshot(data, "dataset")[0])
    else:
        raise UserError(f"--data {data}: no such file or folder, and no dataset '{data}' in the {hub.name} hub")
    if not files:
        raise UserError(f"--data {data}: holds no {', '.join(DATA_SUFFIXES)} files")
    return files


class RowSource:
    """(row number, text) for every row of the files, as often as `check` asks; counts what it read.

    With a format, a row training would use gives the text the factory trains on; a row training would
    drop as malformed still gives every string it holds (an audit scans everything) and is counted in
    `untrainable`. Without a format every string of every row is scanned and trainability is unknown."""

    def __init__(self, files: list[Path], fmt: str | None):
        self.files, self.fmt = files, fmt
        self.read = 0            # rows read
        self.scanned = 0         # rows with any text to scan
        self.untrainable: set[int] = set()  # rows training would drop as malformed (with a format)

    def __call__(self) -> Iterator[tuple[int, str]]:
        from factory.data.data import read_rows

        self.read, self.scanned, self.untrainable = 0, 0, set()
        n = 0
        for path in self.files:
            spec = DatasetSpec(path=str(path), type=self.fmt) if self.fmt else None
            for row in read_rows(path):
                if isinstance(row, Malformed):  # not even parseable: scan its raw text
                    text = row.raw or ""
                    self.untrainable.add(n)
                elif spec is None:
                    text = row_strings(row)
                else:
                    try:
                        text = sample_text(normalise(row, spec))
                    except Malformed:
                        text = row_strings(row)
                        self.untrainable.add(n)
                self.read += 1
                self.scanned += bool(text.strip())
                yield n, text
                n += 1


def rows_of(files: list[Path], fmt: str | None) -> RowSource:
    return RowSource(files, fmt)


def mark_trainable(report: dict, source: RowSource) -> dict:
    """Each match says which of its rows training would drop; the report counts rows read/scanned/dropped."""
    for b in report["benchmarks"].values():
        for m in b["matches"]:
            m["untrainable_rows"] = [r for r in m["train_rows"] if r in source.untrainable]
    report["rows_read"], report["rows_scanned"] = source.read, source.scanned
    report["rows_training_would_drop"] = len(source.untrainable) if source.fmt else None
    return report


def load_benchmarks(specs: list[str], fields: list[str] | None):
    from evals.benchmarks import BenchmarkError, load_benchmark
    from evals.harness import home_files

    from factory.base.home import placeholders

    def spelled_out(spec: str) -> str:  # a shipped task over a file the factory writes (the demo's) is named bare
        files = [] if "=" in spec else home_files(spec)
        return f"{spec}={{factory_home}}/{files[0]}" if files else spec

    specs = [spelled_out(s) for s in specs]
    for key, value in placeholders().items():  # the same placeholders as the eval task files
        specs = [s.replace("{" + key + "}", value) for s in specs]
    try:
        return [load_benchmark(s, tuple(fields) if fields else None) for s in specs]
    except BenchmarkError as exc:
        raise UserError(str(exc)) from None


def summary_line(report: dict) -> str:
    return "; ".join(f"{name}: {b['contaminated']}/{b['items']} items ({b['rate']:.2%})"
                     for name, b in report["benchmarks"].items())


def summary_of(contamination: dict | None) -> dict | None:
    """The contamination report as the data stage's summary keeps it (per benchmark: counts, not the matches)."""
    if contamination is None:
        return None
    return {"policy": contamination["policy"], "rows_flagged": contamination["rows_flagged"],
            "rows_dropped": contamination.get("rows_dropped", 0),
            "malformed_rows_not_checked": contamination["malformed_rows_not_checked"],
            "benchmarks": {n: {k: b[k] for k in ("items", "contaminated", "rate", "by_method")}
                           for n, b in contamination["benchmarks"].items()}}


def apply_policy(request: Request, samples: Callable[[], Iterable[Sample]], reporter: Reporter,
                 reports: list | None = None) -> tuple[set[int], dict | None]:
    """Check the samples (a fresh pass over them per call, in load order); warn, stop (block) or name
    the rows to drop. Returns the rows to drop (by load order) and the report.

    The malformed rows the data stage dropped (counted in the pass's dataset `reports`) are not
    checked, and the report says so."""
    spec = request.contamination
    if not spec.benchmarks:
        return set(), None
    from evals.contamination import check

    benchmarks = load_benchmarks(spec.benchmarks, spec.fields)
    report, bad = check(lambda: ((i, sample_text(s)) for i, s in enumerate(samples())), benchmarks,
                        Path(spec.embedding_model).expanduser() if spec.embedding_model else None)
    malformed = sum(r.malformed for r in reports or [])
    report["policy"] = spec.policy
    report["rows_flagged"] = len(bad)
    report["malformed_rows_not_checked"] = malformed
    line = summary_line(report)
    if bad and spec.policy == "block":
        examples = [f"{n}: item {m['item']} ({m['method']}) \"{m['evidence'][:80]}\""
                    for n, b in report["benchmarks"].items() for m in b["matches"][:2]]
        raise UserError(f"contamination: {len(bad)} training rows overlap the benchmarks ({line}); policy is block, "
                        "so nothing was trained.\n  " + "\n  ".join(examples) +
                        "\n  Remove the rows, or set contamination.policy: drop to train without them.")
    drop = set(bad) if spec.policy == "drop" else set()
    if drop:
        report["rows_dropped"] = len(drop)
    reporter.emit(Event("data", f"contamination: {line}; {len(bad)} rows flagged"
                        + {"warn": " (policy warn: kept)", "drop": " and dropped", "block": ""}[spec.policy]
                        + (f"; {malformed} rows dropped as malformed were not checked" if malformed else "")))
    return drop, report
