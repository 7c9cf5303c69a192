"""The data stage's rows cut into chunks for worker processes, judged there, and the tally kept of them.

Reading a row is cheap; parsing it (JSON), normalising it to a conversation and hashing it for
de-duplication are not (about 20 us a multi-turn row, a third of tokenising it). The reader (the
parent process) only cuts each file's rows into chunks, unparsed where the file is JSON Lines; a
worker judges a chunk (`judge`: each row a digest, or the reason it is malformed) and encodes its
usable rows; the tally (`Tally.take`, in the parent, chunks in load order) counts them into the
datasets' reports, drops duplicates and keeps the rest. The result is the same as `data.stream`'s
(test_row_chunks checks it), with the work that grows with the rows on every core.

A duplicate is encoded before the tally drops it: exact duplicates are rare in real datasets, and
knowing one earlier would put the hashing back on the reader. A dataset with a split slice
(`train[:20%]`) is judged by the reader, which must count its usable rows to know the slice's rows,
so that a small slice of a large file is not encoded whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from factory.request.config import DatasetSpec, Request
from factory.data.data import (
    DatasetReport,
    check_report,
    dataset_files,
    digest,
    json_texts,
    load_samples,
    parse_line,
    read_rows,
    split_parts,
)
from factory.data.formats import Malformed, Sample, normalise

if TYPE_CHECKING:
    from factory.data.encoded_store import EncodedArrays
    from factory.hub.protocol import Hub

CHUNK = 1000  # rows per worker task: one batched render and tokenizer call


@dataclass
class Chunk:
    """Consecutive rows of one data file, as one of three kinds of items:

    - "lines": a JSON Lines file's rows unparsed (or a Malformed for a line over the length limit);
      `lines` holds each one's line number, for the message when it is not JSON;
    - "rows": rows parsed by the reader (JSON arrays, CSV, Parquet) or a Malformed it found;
    - "samples": rows the reader judged, as (messages, text) tuples with their `digests` (a sliced
      dataset; or encode_all's samples, with no digests)."""
    kind: str
    items: list
    dataset: int = 0  # index in the request's datasets
    file: str = ""  # the data file's name, for the reports' examples
    first_row: int = 1  # the file's row number of items[0]
    lines: list[int] | None = None
    digests: list[bytes] | None = None
    last: bool = False  # the dataset's last chunk: its report is complete when this one is tallied


def judge(chunk: Chunk, spec: DatasetSpec | None) -> tuple[list | None, list[Sample]]:
    """Each row's outcome (its digest when usable, else why it is malformed) and the usable samples, in order."""
    if chunk.kind == "samples":
        return chunk.digests, [Sample(*item) for item in chunk.items]
    outcomes: list = []
    samples: list[Sample] = []
    parse = chunk.kind == "lines"
    for k, row in enumerate(chunk.items):
        if parse and type(row) is str:
            row = parse_line(chunk.lines[k], row)
        try:
            if isinstance(row, Malformed):
                raise row
            sample = normalise(row, spec)
        except Malformed as exc:
            outcomes.append(str(exc))
            continue
        outcomes.append(digest(sample))
        samples.append(sample)
    return outcomes, samples


def _parts(rows: Iterator, size: int) -> Iterator[list]:
    return iter(lambda: list(islice(rows, size)), [])


def chunks(request: Request, hub: Hub | None, reports: list[DatasetReport],
           resolved: list[tuple[list[Path], str | None]] | None = None, size: int = CHUNK) -> Iterator[Chunk]:
    """Every dataset's rows in load order, in chunks of `size` that never span two files. Each dataset's
    report is appended to `reports` as its reading starts; its last chunk (empty) marks its end."""
    for i, spec in enumerate(request.datasets):
        report = DatasetReport.of(spec)
        reports.append(report)
        files = resolved[i] if resolved else dataset_files(spec, hub)
        if split_parts(spec.split)[1] is not None:  # a slice: which rows are in it is known once they are judged
            for part in _parts(load_samples(spec, hub, report, files), size):
                yield Chunk("samples", [s.item() for s in part], i, digests=[digest(s) for s in part])
        else:
            paths, report.revision = files
            for path in paths:
                notes: list[str] = []
                first = 1
                if path.suffix.lower() == ".jsonl":
                    for part in _parts(json_texts(path, notes), size):
                        yield Chunk("lines", [text for _, text in part], i, path.name, first, lines=[n for n, _ in part])
                        first += len(part)
                else:
                    for part in _parts(read_rows(path, notes), size):
                        yield Chunk("rows", part, i, path.name, first)
                        first += len(part)
                report.encodings += [f"{path.name}: {note}" for note in notes]
        yield Chunk("samples", [], i, digests=[], last=True)


@dataclass
class Tally:
    """The datasets' reports and de-duplication, kept from judged chunks taken in load order."""
    request: Request
    reports: list[DatasetReport]
    seen: set[bytes] = field(default_factory=set)

    def take(self, chunk: Chunk, outcomes: list, encoded: EncodedArrays) -> EncodedArrays:
        """The chunk's usable rows that are not duplicates, from `encoded` (its usable rows, in order)."""
        report = self.reports[chunk.dataset]
        if chunk.kind != "samples":  # the reader counted a sliced dataset's rows as it judged them
            report.rows += len(outcomes)
        keep: list[int] = []
        usable = 0
        for k, outcome in enumerate(outcomes):
            if type(outcome) is not bytes:
                report.malformed_row(f"{chunk.file} row {chunk.first_row + k}", outcome)
                continue
            if outcome in self.seen:
                report.duplicates += 1
            else:
                self.seen.add(outcome)
                keep.append(usable)
            usable += 1
        report.used += len(keep)
        if chunk.last:
            spec = self.request.datasets[chunk.dataset]
            check_report(report, spec.path, spec.type, self.request.max_malformed_fraction)
        return encoded if len(keep) == len(encoded) else encoded.select(keep)
