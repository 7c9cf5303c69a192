"""Load the request's datasets, normalise them, report malformed rows, drop duplicates, split.

Local files (json, jsonl, parquet, csv) or Hub dataset repos through the Hub protocol.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import random
import re
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Iterator

import orjson

from factory.base import interrupt
from factory.request.config import DATA_SUFFIXES, DatasetSpec, Request
from factory.base.errors import UserError
from factory.data.formats import Malformed, Sample, kind, normalise
from factory.hub.protocol import Hub
from factory.base.textfiles import MAX_LINE_CHARS, LineTooLong, iter_lines, open_binary, read_text

MAX_JSON_BYTES = int(os.environ.get("FACTORY_MAX_JSON_BYTES", 1 << 30))  # a .json array is parsed whole
csv.field_size_limit(MAX_LINE_CHARS)  # a long answer in one CSV cell is a row, not a refusal (default 128 KiB)


@dataclass
class DatasetReport:
    source: str
    rows: int = 0
    used: int = 0
    malformed: int = 0
    duplicates: int = 0
    examples: list[str] = field(default_factory=list)  # "row 12: missing field 'output'"
    revision: str | None = None  # the Hub commit the files came from (None for local files)
    encodings: list[str] = field(default_factory=list)  # "x.csv: decoded from UTF-16 LE with a BOM"

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("source", "rows", "used", "malformed", "duplicates", "examples", "revision",
                                              "encodings")}

    @staticmethod
    def of(spec: DatasetSpec) -> "DatasetReport":
        """An empty report for a dataset: a local file is named by its file name only."""
        return DatasetReport(source=spec.path if not spec.is_local else Path(spec.path).name)

    def malformed_row(self, where: str, reason: object) -> None:
        """Count a malformed row; the first ten are kept as examples ("data.jsonl row 12: ...")."""
        self.malformed += 1
        if len(self.examples) < 10:
            self.examples.append(f"{where}: {reason}")


@dataclass
class Prepared:
    train: list[Sample]
    eval: list[Sample]
    reports: list[DatasetReport]


def read_rows(path: Path, notes: list | None = None) -> Iterator[object]:
    """Rows of a data file, in order, in bounded memory (except a .json array, read whole).

    A row that cannot even be parsed is yielded as a Malformed instance naming its line; a file that
    cannot be read at all (encoding, binary, truncated, a directory, permissions) raises UserError.
    The encoding note (UTF-16 and the like) is appended to `notes` when given."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl" or path.name.lower().endswith(".jsonl.gz"):
        rows = _json_lines(path, notes)
    elif suffix == ".json":
        rows = _json_document(path, notes)
    elif suffix == ".csv":
        rows = _csv_rows(path, notes)
    elif suffix == ".parquet":
        rows = _parquet_rows(path)
    else:
        raise UserError(f"{path}: unsupported data file type; use one of {', '.join(DATA_SUFFIXES)}")
    for n, row in enumerate(rows):
        if not n & 1023:  # a safe point every 1,024 rows: Ctrl-C and cancel reach a long read
            interrupt.safe_point()
        yield row


def _json_lines(path: Path, notes: list | None) -> Iterator[object]:
    for n, line in json_texts(path, notes):
        yield parse_line(n, line) if type(line) is str else line


def json_texts(path: Path, notes: list | None) -> Iterator[tuple[int, str | Malformed]]:
    """A JSON Lines file's rows as (line number, text), unparsed; a line over the length limit as a
    Malformed instead of its text. Blank lines are no rows."""
    for n, line in enumerate(iter_lines(path, "JSON Lines data file", notes), 1):
        if not n & 1023:
            interrupt.safe_point()
        if isinstance(line, LineTooLong):
            yield n, Malformed(line.message())
        elif not line.isspace():  # iter_lines yields no empty line: each ends with its newline or is the last
            yield n, line


def parse_line(n: int, line: str) -> object:
    """One JSON Lines row parsed, or a Malformed naming its line. orjson parses valid rows in under half
    json's time; anything it refuses (a lone surrogate, NaN, 1e400, nesting past 1,024) gets json's own
    answer and message. Where they differ on a valid row (orjson reads an integer past 64 bits as a
    float) it is a number either way, which no row format takes as text."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return Malformed(f"line {n} is not JSON ({exc.msg} at column {exc.colno})", raw=line)
    except RecursionError:
        return Malformed(f"line {n} is nested too deeply to be a row", raw=line[:10_000])
    return Malformed(f"line {n} {LONE_SURROGATE}", raw=line) if _lone_surrogate(row) else row


LONE_SURROGATE = ("holds a lone surrogate escape (\\uD800 to \\uDFFF without its pair), which is not text a "
                  "tokenizer can read; fix the escape or drop the row")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(row: object) -> bool:
    """Whether a parsed row holds a lone surrogate anywhere (only a JSON escape can make one: text decoded
    from a file cannot). The tokenizer would refuse the whole batch it is in."""
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True
    except RecursionError:  # nested too deeply to check: no row format reads that deep
        return False


def digest(sample: Sample) -> bytes:
    """The 16 bytes de-duplication keeps of a sample: exact duplicates have the same."""
    return blake2b(sample.key().encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _json_document(path: Path, notes: list | None) -> Iterator[object]:
    text, note = read_text(path, max_bytes=MAX_JSON_BYTES, what="JSON data file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if "\n{" in text[:100_000]:  # JSON Lines under a .json name
            yield from _json_lines(path, notes)
            return
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                        f"fix it, or give one JSON object per line in a .jsonl file") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to be rows of data") from None
    if note and notes is not None:
        notes.append(note)
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]} / {"train": [...]}
    if not isinstance(data, list):
        raise UserError(f"{path}: the JSON holds {kind(data)}, not an array of rows; give [{{...}}, {{...}}] "
                        f"or one JSON object per line (.jsonl)")
    if data and not any(isinstance(r, dict) for r in data):
        plural = {"null": "nulls", "a boolean": "booleans", "a number": "numbers", "a list": "lists", "text": "strings"}
        kinds = " and ".join(sorted({plural.get(kind(r), kind(r)) for r in data}))
        raise UserError(f"{path}: a JSON array of {kinds}, not of objects; each row must be an object "
                        f'such as {{"instruction": ..., "output": ...}}')
    if _SURROGATE_ESCAPE.search(text):  # rare: only then is each row checked
        data = [Malformed(f"row {LONE_SURROGATE}") if _lone_surrogate(r) else r for r in data]
    yield from data


def _csv_rows(path: Path, notes: list | None) -> Iterator[object]:
    lines = iter_lines(path, "CSV data file", notes)

    def text_lines():
        for line in lines:
            if isinstance(line, LineTooLong):
                raise UserError(f"{path}: {line.message()}")
            yield line

    reader = csv.reader(text_lines())
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise UserError(f"{path}: has no header line; the first line of a CSV names its columns")
        for record in reader:
            if not record:  # a blank line
                continue
            if len(record) != len(header):
                joined = " (a quote left open joins lines into one field?)" if any("\n" in v for v in record) else ""
                yield Malformed(f"line {reader.line_num} has {len(record)} fields, the header has {len(header)}{joined}",
                                raw=",".join(record))
                continue
            yield dict(zip(header, record))
    except csv.Error as exc:
        raise UserError(f"{path}: line {reader.line_num}: not valid CSV ({exc}); check its quotes") from None


def _parquet_rows(path: Path) -> Iterator[object]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    open_binary(path, "Parquet data file").close()  # a directory or a permission problem gets its own message
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0][:200]}); it may be "
                        f"truncated or corrupted: export it again") from None


def repo_data_files(root: Path) -> list[Path]:
    """The data files of a dataset repo snapshot, in a stable order (the factory's own publish manifest is none)."""
    from factory.hub.protocol import MANIFEST

    return sorted(p for p in root.rglob("*") if p.name.endswith(DATA_SUFFIXES) and not p.name.startswith(".")
                  and p.name != MANIFEST and p.is_file())


def dataset_files(spec: DatasetSpec, hub: Hub) -> tuple[list[Path], str | None]:
    """The files to read for spec, and the Hub revision they came from (None for local files)."""
    if spec.is_local:
        path = Path(spec.path).expanduser()
        if path.is_dir():
            raise UserError(f"dataset file '{spec.path}' is a directory; name a {'/'.join(DATA_SUFFIXES)} file inside it")
        if not path.is_file():
            raise UserError(f"dataset file '{spec.path}' does not exist")
        return [path], None
    root, revision = hub.snapshot(spec.path, "dataset")
    files = repo_data_files(root)
    if spec.name:
        files = [p for p in files if spec.name in p.relative_to(root).parts]
    if spec.data_files:  # the request names the files: no split matching
        chosen = [p for p in files if any(fnmatch.fnmatchcase(p.relative_to(root).as_posix(), f) for f in spec.data_files)]
        what = f"data_files {spec.data_files}"
    else:
        split = split_parts(spec.split)[0]
        chosen = [p for p in files if p.name.split(".")[0].split("-")[0] == split or p.parent.name == split]
        if not chosen and split == "train" and len(files) == 1:
            chosen = files
        what = f"split '{split}'"
    if not chosen:
        names = ", ".join(p.relative_to(root).as_posix() for p in files) or "none"
        raise UserError(f"dataset '{spec.path}' has no files for {what} (files: {names})")
    return chosen, revision


SPLIT = re.compile(r"([\w.-]+)\[(-?\d*%?):(-?\d*%?)\]")


def split_parts(split: str) -> tuple[str, str | None, str | None]:
    """'train[:20%]' -> ('train', '', '20%'): the split's name and the slice bounds (Hugging Face datasets' syntax)."""
    m = SPLIT.fullmatch(split)
    return (m.group(1), m.group(2), m.group(3)) if m and m.group(2) is not None else (split, None, None)


def _bound(text: str | None, n: int | None) -> int | None:
    if not text:
        return None
    return round(n * int(text[:-1]) / 100) if text.endswith("%") else int(text)


def load_samples(spec: DatasetSpec, hub: Hub, report: DatasetReport,
                 resolved: tuple[list[Path], str | None] | None = None) -> Iterator[Sample]:
    """The dataset's usable samples, in file order, within the split's slice (train[:20%], train[100:200],
    train[-500:]). A bound that needs the number of samples (a percentage, a negative index) costs a
    first pass that counts them and keeps none: memory stays bounded either way.

    `resolved`: the dataset's files and revision from dataset_files, when the caller already has them
    (every pass over the data then reads the same Hub revision)."""
    resolved = resolved or dataset_files(spec, hub)
    _, lo, hi = split_parts(spec.split)
    if lo is None:
        yield from _all_samples(spec, report, resolved)
        return
    n = None
    if any(b and (b.endswith("%") or b.startswith("-")) for b in (lo, hi)):
        n = sum(1 for _ in _all_samples(spec, DatasetReport(report.source), resolved))
        start, stop, _ = slice(_bound(lo, n), _bound(hi, n)).indices(n)
    else:
        start, stop = _bound(lo, n) or 0, _bound(hi, n)
    for i, sample in enumerate(_all_samples(spec, report, resolved)):  # every row read: the report counts them all
        if start <= i and (stop is None or i < stop):
            yield sample


def _all_samples(spec: DatasetSpec, report: DatasetReport, resolved: tuple[list[Path], str | None]) -> Iterator[Sample]:
    files, report.revision = resolved
    for path in files:
        notes: list[str] = []
        for n, row in enumerate(read_rows(path, notes), 1):
            report.rows += 1
            try:
                if isinstance(row, Malformed):
                    raise row
                yield normalise(row, spec)
            except Malformed as exc:
                report.malformed_row(f"{path.name} row {n}", exc)
        report.encodings += [f"{path.name}: {note}" for note in notes]


def stream(request: Request, hub: Hub, reports: list[DatasetReport],
           resolved: list[tuple[list[Path], str | None]] | None = None) -> Iterator[Sample]:
    """Every dataset's usable samples in load order, de-duplicated, in bounded memory: only a 16-byte
    digest of each sample is kept. Each dataset's report is appended to `reports` as it starts, and its
    rows are judged (none usable, too many malformed) when it ends. `resolved`: each dataset's files
    and revision, when the caller has them."""
    seen: set[bytes] = set()
    for i, spec in enumerate(request.datasets):
        report = DatasetReport.of(spec)
        reports.append(report)
        for sample in load_samples(spec, hub, report, resolved[i] if resolved else None):
            key = digest(sample)
            if key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            report.used += 1
            yield sample
        check_report(report, spec.path, spec.type, request.max_malformed_fraction)


def check_report(report: DatasetReport, name: str, type_: str, max_malformed_fraction: float) -> None:
    """A dataset with no rows, no usable row, or more malformed rows than allowed stops the run."""
    if report.rows == 0:
        raise UserError(f"dataset '{name}' has no rows; the file holds no data after its header or is blank")
    shown = "\n    ".join(report.examples)
    if report.used == 0 and report.malformed == report.rows:
        raise UserError(f"dataset '{name}': none of its {report.rows} rows is usable. First problems:\n    {shown}\n"
                        f"  Check `type:` ({type_}) and map the columns (field_*, field_messages, roles).")
    bad = report.malformed / report.rows
    if bad > max_malformed_fraction:
        raise UserError(
            f"dataset '{name}': {report.malformed} of {report.rows} rows ({bad:.1%}) are malformed, "
            f"more than max_malformed_fraction={max_malformed_fraction}. First problems:\n    {shown}\n"
            f"  Fix the rows, map the columns (field_*, field_messages, roles), or raise max_malformed_fraction."
        )


def estimated_rows(path: Path) -> int:
    """About how many rows a data file holds, cheaply (for a progress bar's total): its lines, or a
    Parquet file's own count; 0 when it cannot tell without parsing (a .json array)."""
    suffix = path.suffix.lower()  # (.gz: compressed lines cannot be counted cheaply: 0)
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if suffix in (".jsonl", ".csv"):
            with open(path, "rb") as f:
                return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    except Exception:  # noqa: BLE001 - only an estimate: reading the rows reports the real problem
        return 0
    return 0


def check_held_out(request: Request, estimates: list[int]) -> None:
    """Refuse, before any tokenising, a val_set_size of more rows than the files can hold. `estimates`: each
    file's estimated_rows, its lines (a file holds no more rows, but for one unterminated last line) or
    its Parquet row count. A file whose rows cannot be counted cheaply (0: a .json array) leaves it to
    split_rows, after tokenising."""
    most = sum(estimates) + len(estimates)
    if request.val_set_size >= 1 and estimates and all(estimates) and int(request.val_set_size) >= most:
        raise UserError(f"val_set_size={int(request.val_set_size)} leaves no training rows: the data files hold at most "
                        f"{most:,} rows; hold out fewer, or a fraction (val_set_size: 0.05 holds out 5%)")


def split_rows(n: int, request: Request) -> tuple[list[int], list[int]]:
    """The seeded train/eval split of n rows in load order: (train rows, eval rows), each in training order.

    Shuffled (the default): a seeded permutation whose first val_set_size rows are held out. With
    shuffle_merged_datasets: false the datasets' own order is kept and the eval rows are drawn at random."""
    rng = random.Random(request.seed)
    n_eval = int(request.val_set_size) if request.val_set_size >= 1 else int(round(request.val_set_size * n))
    if n_eval >= n:
        raise UserError(f"val_set_size={request.val_set_size:g} leaves no training rows (only {n} rows)")
    if not request.shuffle_merged_datasets:  # curriculum: the datasets' order is the training order
        held = set(rng.sample(range(n), n_eval))
        return [i for i in range(n) if i not in held], sorted(held)
    order = list(range(n))
    rng.shuffle(order)  # the same permutation shuffling the samples themselves would give
    return order[n_eval:], order[:n_eval]


def prepare(request: Request, hub: Hub) -> Prepared:
    """All datasets normalised, mixed, de-duplicated and split (seeded), held in memory."""
    reports: list[DatasetReport] = []
    samples = list(stream(request, hub, reports))
    train, evalset = split_rows(len(samples), request)
    return Prepared(train=[samples[i] for i in train], eval=[samples[i] for i in evalset], reports=reports)
