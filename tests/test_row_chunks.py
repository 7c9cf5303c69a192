"""The data stage judged in worker processes (row_chunks, encode_datasets) gives what the reader-side
path gives (data.stream into encode_all): the same samples in the same order, the same reports, the
same refusals."""

from __future__ import annotations

import csv
import gc
import json

import numpy as np
import pytest

from factory.data.chat import BUILTIN_TEMPLATES
from factory.request.config import parse_request
from factory.data.data import parse_line, read_rows, stream
from factory.data.encode import encode_all, encode_datasets
from factory.data.encoded_store import EncodedArrays
from factory.base.errors import UserError
from factory.data.formats import Malformed
from factory.data.row_chunks import CHUNK, chunks

CHATML = BUILTIN_TEMPLATES["chatml"]


def _conv(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"what is {i} about"}, {"role": "assistant", "content": f"{i} is rain"},
                         {"role": "user", "content": "and then?"}, {"role": "assistant", "content": f"then {i % 7} more"}]}


def _odd_lines() -> list[str]:
    """Rows each reader must judge the same way: not JSON, JSON but not an object, values orjson refuses
    (json's answer then decides), a surrogate pair, deep nesting, a blank line, a missing field."""
    return ["not json at all\n", '"just a string"\n', "[1, 2]\n", "   \n",
            '{"messages": [{"role": "user", "content": "\\ud800 lone"}, {"role": "assistant", "content": "ok"}]}\n',
            '{"messages": [{"role": "user", "content": "pair \\ud83d\\ude00"}, {"role": "assistant", "content": "ok"}]}\n',
            '{"messages": NaN}\n', '{"messages": [{"role": "user", "content": 1e400}]}\n',
            '{"messages": [{"role": "user", "content": 123456789012345678901234567890}]}\n',
            "[" * 3000 + "]" * 3000 + "\n", '{"conversations": []}\n', '{"messages": [{"role": "user", "content": "a"}]}\n']


def _write(tmp_path):
    """A JSON Lines file over several chunks (odd rows and duplicates among them), a CSV that repeats
    some of its conversations as alpaca rows, a JSON array, a Parquet file and a sliced copy of the
    first file."""
    lines = []
    for i in range(5 * CHUNK + 300):
        lines.append(json.dumps(_conv(i % (4 * CHUNK))) + "\n")  # the last 1,300 repeat earlier rows
        if i % 997 == 0:
            lines += _odd_lines()
    (tmp_path / "a.jsonl").write_text("".join(lines))
    with open(tmp_path / "b.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["instruction", "output"])
        w.writeheader()
        w.writerows([{"instruction": f"q{i}", "output": f"a{i}"} for i in range(40)] + [{"instruction": "q1", "output": ""}])
        f.write("one,two,three\n")
    (tmp_path / "c.json").write_text(json.dumps([{"text": f"doc {i}"} for i in range(30)] + ["text, not a row"]))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"text": f"doc {i}"} for i in range(35)]), tmp_path / "d.parquet")
    return parse_request({"base_model": "o/b", "max_malformed_fraction": 0.5, "dataset_processes": 2, "datasets": [
        {"path": str(tmp_path / "a.jsonl"), "type": "messages"}, {"path": str(tmp_path / "b.csv")},
        {"path": str(tmp_path / "c.json"), "type": "completion"}, {"path": str(tmp_path / "d.parquet"), "type": "completion"},
        {"path": str(tmp_path / "a.jsonl"), "type": "messages", "split": "train[-40%:-2]"}]})


def _reference(req, tokenizer):
    reports: list = []
    encoded, _ = encode_all(list(stream(req, None, reports)), tokenizer, CHATML, False, processes=1)
    return encoded, [r.as_dict() for r in reports]


def _judged_in_workers(req, tokenizer):
    reports: list = []
    parts: list[EncodedArrays] = []
    stats = encode_datasets(req, None, reports, tokenizer, CHATML, parts.append)
    return EncodedArrays.concat(parts), [r.as_dict() for r in reports], stats


@pytest.mark.parametrize("processes", [1, 2])
def test_workers_judge_rows_as_the_reader_does(tiny_tokenizer, tmp_path, processes):
    req = _write(tmp_path).model_copy(update={"dataset_processes": processes})
    want, want_reports = _reference(req, tiny_tokenizer)
    got, got_reports, stats = _judged_in_workers(req, tiny_tokenizer)
    assert stats["processes"] == processes and gc.get_freeze_count() == 0  # the stage's gc.freeze is undone
    assert got_reports == want_reports
    assert len(got) == len(want) and np.array_equal(got.offsets, want.offsets)
    assert np.array_equal(got.ids, want.ids) and np.array_equal(got.trained, want.trained)
    a, b, c, d, sliced = got_reports  # what the data holds, so that the comparison above covers it
    assert a["rows"] == 5 * CHUNK + 300 + 6 * 11 and a["malformed"] == 6 * 10  # all odd rows but the surrogate pair
    assert a["duplicates"] == 1300 + 5
    assert sum(("not JSON" in x) + ("nested too deeply" in x) + ("lone surrogate" in x) for x in a["examples"]) >= 3
    assert (b["malformed"], b["duplicates"], b["used"]) == (2, 0, 40)
    assert (c["malformed"], c["used"], d["used"], d["duplicates"]) == (1, 30, 5, 30)  # d repeats c's first 30 docs
    assert sliced["used"] == 0 and sliced["duplicates"] > 1000  # every row of the slice is in a.jsonl already


def test_a_dataset_with_too_many_malformed_rows_stops_with_the_same_message(tiny_tokenizer, tmp_path):
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps({"instruction": "q", "output": ""}) + "\n" for _ in range(5))
                                        + json.dumps({"instruction": "q", "output": "a"}) + "\n")
    req = parse_request({"base_model": "o/b", "datasets": [{"path": str(tmp_path / "bad.jsonl")}]})
    with pytest.raises(UserError) as reader:
        _reference(req, tiny_tokenizer)
    with pytest.raises(UserError) as workers:
        _judged_in_workers(req, tiny_tokenizer)
    assert str(workers.value) == str(reader.value) and "5 of 6 rows" in str(reader.value)


def test_an_empty_dataset_is_refused_after_the_one_before_it_is_tallied(tiny_tokenizer, tmp_path):
    (tmp_path / "good.jsonl").write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    (tmp_path / "empty.csv").write_text("instruction,output\n")
    req = parse_request({"base_model": "o/b", "datasets": [{"path": str(tmp_path / "good.jsonl")},
                                                          {"path": str(tmp_path / "empty.csv")}]})
    reports: list = []
    with pytest.raises(UserError, match="'.*empty.csv' has no rows"):
        encode_datasets(req, None, reports, tiny_tokenizer, CHATML, lambda _: None)
    assert reports[0].used == 1


def test_chunks_stay_within_a_file_and_the_reader_parses_nothing(tmp_path):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(_conv(i)) + "\n" for i in range(25)) + "\n\nnot json\n")
    req = parse_request({"base_model": "o/b", "datasets": [{"path": str(tmp_path / "a.jsonl"), "type": "messages"}] * 2})
    reports: list = []
    got = list(chunks(req, None, reports, size=10))
    assert [(c.kind, c.dataset, c.first_row, len(c.items), c.last) for c in got] == [
        ("lines", 0, 1, 10, False), ("lines", 0, 11, 10, False), ("lines", 0, 21, 6, False), ("samples", 0, 1, 0, True),
        ("lines", 1, 1, 10, False), ("lines", 1, 11, 10, False), ("lines", 1, 21, 6, False), ("samples", 1, 1, 0, True)]
    assert all(type(x) is str for c in got for x in c.items)  # unparsed text: the workers parse it
    assert got[2].lines == [21, 22, 23, 24, 25, 28]  # line numbers skip the blank lines, for the messages
    assert len(reports) == 2


def test_parse_line_falls_back_to_json_for_what_orjson_refuses(tmp_path):
    assert parse_line(1, "[1e400]") == [float("inf")]  # json reads what orjson refuses, as before
    assert parse_line(1, '{"a": "\\ud83d\\ude00", "b": NaN}')["a"] == "\U0001F600"
    lone = parse_line(4, '{"a": "x\\ud800"}')  # json reads it, but no tokenizer can: malformed, not a crash
    assert isinstance(lone, Malformed) and str(lone).startswith("line 4 holds a lone surrogate escape")
    (tmp_path / "rows.json").write_text('[{"text": "fine"}, {"text": "bad \\uDC00"}, {"text": "pair \\ud83d\\ude00"}]')
    rows = list(read_rows(tmp_path / "rows.json"))
    assert rows[0] == {"text": "fine"} and isinstance(rows[1], Malformed) and rows[2] == {"text": "pair \U0001F600"}
    bad = parse_line(7, '{"a": 1,}')
    assert isinstance(bad, Malformed) and str(bad).startswith("line 7 is not JSON (")
    deep = parse_line(3, "[" * 100_000 + "]" * 100_000)
    assert isinstance(deep, Malformed) and "nested too deeply" in str(deep)


def test_select_keeps_the_rows_asked_for(tiny_tokenizer):
    from factory.data.formats import Sample

    samples = [Sample(messages=(("user", f"q{i}"), ("assistant", "a" * (i + 1)))) for i in range(6)]
    encoded, _ = encode_all(samples, tiny_tokenizer, CHATML, False, processes=1)
    picked = encoded.select([0, 2, 5])
    assert picked.to_list() == [encoded.to_list()[i] for i in (0, 2, 5)]
    assert len(encoded.select([])) == 0
