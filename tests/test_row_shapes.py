"""Property test: rows of random shape, in every file type, load with an exact malformed count or are
refused with a UserError (exit 2); nothing else is ever raised.

The oracle below is written from the formats' documented rules, independently of factory/data/formats.py.
Derandomised, so a failure replays the same way on every machine.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory.request.config import parse_request
from factory.data.data import prepare
from factory.base.errors import UserError

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

ROLE_SETS = {  # what each format accepts (its documented role names)
    "sharegpt": ("from", "value", {"human", "user", "gpt", "assistant", "model", "chatgpt", "bing", "bard", "system"},
                 {"gpt", "assistant", "model", "chatgpt", "bing", "bard"}),
    "messages": ("role", "content", {"user", "assistant", "system", "developer"}, {"assistant"}),
}
FIELD = {"sharegpt": "conversations", "messages": "messages"}

texts = st.one_of(st.text(max_size=12), st.sampled_from(["", "  ", "\n", "a", "é — ü", "line\r\nbreak", '"q,",']))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False), texts)
anything = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                        max_leaves=6)


def nonblank(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def valid(fmt: str, row) -> bool:
    if not isinstance(row, dict):
        return False
    if fmt == "alpaca":
        optional_ok = all(row.get(k) is None or isinstance(row.get(k), str) for k in ("input", "system"))
        return nonblank(row.get("instruction")) and nonblank(row.get("output")) and optional_ok
    if fmt == "completion":
        return nonblank(row.get("text"))
    role_key, content_key, roles, assistant = ROLE_SETS[fmt]
    turns = row.get(FIELD[fmt])
    if not isinstance(turns, list) or not turns:
        return False
    for t in turns:
        if not (isinstance(t, dict) and isinstance(t.get(role_key), str) and t[role_key] in roles
                and nonblank(t.get(content_key))):
            return False
    return any(t[role_key] in assistant for t in turns)


def row_strategy(fmt: str):
    value = st.one_of(texts, scalars, st.lists(texts, max_size=2))
    if fmt in ("alpaca", "completion"):
        keys = ["instruction", "input", "output", "system"] if fmt == "alpaca" else ["text", "body"]
        near = st.dictionaries(st.sampled_from(keys + ["other"]), value, max_size=5)
    else:
        role_key, content_key, roles, _ = ROLE_SETS[fmt]
        turn = st.one_of(st.dictionaries(st.sampled_from([role_key, content_key, "name"]),
                                         st.one_of(st.sampled_from(sorted(roles) + ["narrator", "tool"]), value),
                                         max_size=3),
                         scalars)
        near = st.fixed_dictionaries({FIELD[fmt]: st.one_of(st.lists(turn, max_size=4), value)})
    return st.one_of(near, near, anything)


def expect(fmt: str, rows: list) -> tuple[str, int]:
    """('refused', 0) or ('loaded', malformed count) for rows written as JSON or JSON Lines."""
    bad = sum(not valid(fmt, r) for r in rows)
    if not rows or bad == len(rows):
        return "refused", 0
    return "loaded", bad


def load(path, fmt: str):
    req = parse_request({"base_model": "org/base", "datasets": [{"path": str(path), "type": fmt}],
                         "max_malformed_fraction": 1.0})
    try:
        prepared = prepare(req, None)
    except UserError as exc:
        return "refused", str(exc)
    return "loaded", prepared.reports[0].malformed


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "messages", "completion"])
@pytest.mark.parametrize("suffix", ["jsonl", "json"])
@SETTINGS
@given(data=st.data())
def test_json_files_of_random_rows(tmp_path, fmt, suffix, data):
    rows = data.draw(st.lists(row_strategy(fmt), max_size=8), label="rows")
    path = tmp_path / f"rows.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        want = expect(fmt, rows)
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")
        # an array of non-objects is refused as a whole
        want = ("refused", 0) if rows and not any(isinstance(r, dict) for r in rows) else expect(fmt, rows)
    got = load(path, fmt)
    assert got[0] == want[0] and (got[0] == "refused" or got[1] == want[1]), (rows, got, want)


@SETTINGS
@given(records=st.lists(st.lists(st.text(max_size=10), min_size=1, max_size=5), max_size=8))
def test_csv_files_of_random_rows(tmp_path, records):
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["instruction", "input", "output"])
    writer.writerows(records)
    path = tmp_path / "rows.csv"
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    got = load(path, "alpaca")
    if any("\0" in field for rec in records for field in rec):
        assert got[0] == "refused" and "NUL byte" in got[1]
        return
    rows = [dict(zip(["instruction", "input", "output"], r)) if len(r) == 3 else None for r in records]
    want = expect("alpaca", rows)
    assert got[0] == want[0] and (got[0] == "refused" or got[1] == want[1]), (records, got, want)


column = st.one_of(st.just(st.one_of(st.none(), texts)), st.just(st.one_of(st.none(), st.integers(0, 9))),
                   st.just(st.one_of(st.none(), st.lists(texts, max_size=2))))


@SETTINGS
@given(data=st.data())
def test_parquet_files_of_random_rows(tmp_path, data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {k: data.draw(column, label=k) for k in ("instruction", "input", "output")}
    n = data.draw(st.integers(0, 8), label="n")
    rows = [{k: data.draw(s, label=k) for k, s in kinds.items()} for _ in range(n)]
    table = pa.Table.from_pylist(rows) if rows else pa.table({k: pa.array([], pa.string()) for k in kinds})
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path)
    got = load(path, "alpaca")
    want = expect("alpaca", table.to_pylist())
    assert got[0] == want[0] and (got[0] == "refused" or got[1] == want[1]), (rows, got, want)
