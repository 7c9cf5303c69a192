"""The benchmark registry: where a benchmark's test items come from, and which of their fields are text.

Built-in names (gsm8k, mmlu, arc_easy, arc_challenge, truthfulqa, winogrande, hellaswag) resolve to
local files under $FACTORY_BENCHMARKS_DIR (laid out as NAME/FILES, like ../shared/data/benchmarks)
or, when the Hub is reachable, to their Hub dataset. Anything else is `NAME=PATH` to a JSON, JSONL,
JSONL.GZ or CSV file. An item's text is every string field, plus the strings inside list fields
(answer choices), in the file's order; `fields` narrows that.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path


class BenchmarkError(ValueError):
    """A benchmark that cannot be found or read; the message says what to give instead."""


@dataclass(frozen=True)
class Builtin:
    hub_id: str
    hub_config: str | None
    split: str
    local: tuple[str, ...]  # glob patterns under $FACTORY_BENCHMARKS_DIR


BUILTIN: dict[str, Builtin] = {
    "gsm8k": Builtin("openai/gsm8k", "main", "test", ("gsm8k/*test*.jsonl",)),
    "mmlu": Builtin("cais/mmlu", "all", "test", ("mmlu/*.jsonl",)),
    "arc_easy": Builtin("allenai/ai2_arc", "ARC-Easy", "test", ("arc/*arc_easy*.jsonl",)),
    "arc_challenge": Builtin("allenai/ai2_arc", "ARC-Challenge", "test", ("arc/*arc_challenge*.jsonl",)),
    "truthfulqa": Builtin("truthfulqa/truthful_qa", "generation", "validation", ("truthfulqa/TruthfulQA.csv",)),
    "winogrande": Builtin("allenai/winogrande", "winogrande_xl", "validation", ("winogrande/*.jsonl",)),
    "hellaswag": Builtin("Rowan/hellaswag", None, "validation", ("hellaswag/*.jsonl",)),
}


@dataclass(frozen=True)
class Benchmark:
    name: str
    source: str  # the file(s) or Hub id the items came from
    items: list[list[str]]  # per item, its text fields in order


URL = re.compile(r"^\s*(https?://\S+\s*;?\s*)+$")


def strings_of(item: dict, fields: tuple[str, ...] | None) -> list[str]:
    """The text of one item: string fields and strings inside list fields (choices), in order.

    Fields holding only URLs (TruthfulQA's Source) are not text a model could learn the answer from."""
    out: list[str] = []
    for key, value in item.items():
        if fields is not None and key not in fields:
            continue
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
    return [s for s in out if s.strip() and not URL.match(s)]


def read_items(path: Path) -> list[dict]:
    """Records of a JSON (array, or an object holding one array), JSONL, JSONL.GZ or CSV file."""
    name = path.name.lower()
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        if name.endswith(".json"):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
                data = next(iter(data.values()))
            if not isinstance(data, list):
                raise BenchmarkError(f"{path}: expected a JSON array of items")
            return data
        if name.endswith(".csv"):
            with open(path, encoding="utf-8-sig", newline="") as f:
                return list(csv.DictReader(f))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise BenchmarkError(f"{path}: cannot read benchmark items ({exc})") from None
    raise BenchmarkError(f"{path}: benchmark files must be .json, .jsonl, .jsonl.gz or .csv")


def _checked(name: str, records: list, fields: tuple[str, ...] | None) -> list[list[str]]:
    if not all(isinstance(r, dict) for r in records):
        raise BenchmarkError(f"benchmark {name}: every item must be a JSON object or a CSV row")
    items = [strings_of(r, fields) for r in records]
    if fields is not None and records and not any(items):
        present = sorted({k for r in records[:50] for k in r})
        raise BenchmarkError(f"benchmark {name}: none of the fields {', '.join(fields)} hold text; "
                             f"the items have {', '.join(present)}")
    return items


def _hub_records(name: str, spec: Builtin) -> tuple[str, list[dict]]:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise BenchmarkError(f"benchmark {name}: no local copy (set FACTORY_BENCHMARKS_DIR or give {name}=PATH) "
                             f"and HF_HUB_OFFLINE=1 keeps the Hub dataset {spec.hub_id} out of reach")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(spec.hub_id, repo_type="dataset", allow_patterns=hub_patterns(spec)))
    except Exception as exc:  # noqa: BLE001 - any Hub failure is the same message to the user
        raise BenchmarkError(f"benchmark {name}: cannot download {spec.hub_id} ({type(exc).__name__}); "
                             f"give {name}=PATH to a local copy") from None
    import pyarrow.parquet as pq

    files = hub_files(spec, [p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")])
    if not files:
        raise BenchmarkError(f"benchmark {name}: {spec.hub_id} has no {spec.split} parquet files for config "
                             f"{spec.hub_config or '(default)'}; give {name}=PATH to a local copy")
    return spec.hub_id, [r for f in files for r in pq.read_table(folder / f).to_pylist()]


def hub_patterns(spec: Builtin) -> list[str]:
    """The files of one config's split in the Hub's parquet layout (CONFIG/SPLIT-*.parquet, or data/ without
    configs). One config only: ARC-Easy must not take ARC-Challenge's items, nor MMLU's `all` its subjects'."""
    if spec.hub_config:
        return [f"{spec.hub_config}/{spec.split}-*.parquet"]
    return [f"data/{spec.split}-*.parquet", f"{spec.split}-*.parquet"]


def hub_files(spec: Builtin, paths: list[str]) -> list[str]:
    """Of a snapshot's parquet files (relative paths), the ones of this config and split, sorted."""
    from fnmatch import fnmatchcase

    return sorted(p for p in paths if any(fnmatchcase(p, pattern) for pattern in hub_patterns(spec)))


def load_records(spec: str) -> tuple[str, str, list]:
    """(name, source, raw records) for `NAME=PATH` or a built-in NAME."""
    if "=" in spec:
        name, _, path = spec.partition("=")
        p = Path(path).expanduser()
        if not p.is_file():
            raise BenchmarkError(f"benchmark {name}: no such file {p}")
        return name, str(p), read_items(p)
    if spec not in BUILTIN:
        raise BenchmarkError(f"unknown benchmark '{spec}'; built in: {', '.join(BUILTIN)}; or give NAME=PATH")
    builtin = BUILTIN[spec]
    root = os.environ.get("FACTORY_BENCHMARKS_DIR")
    if root:
        paths = sorted({p for pattern in builtin.local for p in Path(root).expanduser().glob(pattern)})
        if paths:
            return spec, ", ".join(map(str, paths)), [r for p in paths for r in read_items(p)]
    return (spec, *_hub_records(spec, builtin))


def load_benchmark(spec: str, fields: tuple[str, ...] | None = None) -> Benchmark:
    """`NAME=PATH` or a built-in NAME, as text items."""
    name, source, records = load_records(spec)
    return Benchmark(name, source, _checked(name, records, fields))
