"""Broken request and dataset files: each gets exit 2 and one clear message, never a traceback.

The table runs the real commands in-process (`factory validate` for request files, `factory prepare`
for dataset files); the permission cases run as the `nobody` user when the tests run as root, since
root reads any file whatever its mode.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import yaml

from factory.cli.main import main

GOOD_ROWS = [{"instruction": f"Name song {i}", "output": f"Song {i} is about rain"} for i in range(20)]
GOOD_YAML = "base_model: org/tiny-base\nsequence_len: 128\ndatasets:\n  - path: data.jsonl\n"


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def parquet_bytes(rows) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def csv_text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def request_for(tmp_path: Path, base: Path, data: str, type_: str = "alpaca", **extra) -> Path:
    req = {"base_model": str(base), "datasets": [{"path": data, "type": type_}], "sequence_len": 128,
           "max_steps": 1, **extra}
    path = tmp_path / "req.yaml"
    path.write_text(yaml.safe_dump(req))
    return path


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_refused(code: int, err: str, words: list[str]) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    assert err.count("error: ") == 1, err
    for w in words:
        assert w.lower() in err.lower(), f"{w!r} not in: {err}"


# ---- request files ---------------------------------------------------------------------------------

REQUEST_CASES = [
    ("random bytes", bytes(range(128, 256)) * 4, ["req.yaml", "not UTF-8", "byte offset 0"]),
    ("UTF-16 without a BOM", GOOD_YAML.encode("utf-16-le"), ["NUL byte", "byte offset 1", "UTF-16 without a byte-order mark"]),
    ("UTF-32 with a BOM", codecs.BOM_UTF32_LE + GOOD_YAML.encode("utf-32-le"), ["UTF-32", "save it as UTF-8"]),
    ("Latin-1 accent", "base_model: org/tiny-base\n# caf\xe9\n".encode("latin-1"), ["not UTF-8", "byte offset 31", "e9"]),
    ("empty file", b"", ["is empty"]),
    ("only a comment", b"# nothing here\n", ["request is empty", "factory validate --keys"]),
    ("a YAML list", b"- base_model: org/tiny-base\n", ["YAML mapping", "got a list"]),
    ("a YAML scalar", b"just words\n", ["YAML mapping", "got str"]),
    ("bad YAML", b"base_model: [org/tiny-base\ndatasets: x\n", ["not valid YAML", "req.yaml:"]),
    ("over 1 MiB", b"# " + b"x" * (1 << 20) + b"\n", ["larger than 1,048,576 bytes"]),
]


@pytest.mark.parametrize("name,content,words", REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
def test_broken_request_file(tmp_path, capsys, name, content, words):
    path = tmp_path / "req.yaml"
    path.write_bytes(content)
    assert_refused(*run_cli(["validate", str(path)], capsys), words)


def test_request_file_that_is_a_directory(tmp_path, capsys):
    (tmp_path / "req.yaml").mkdir()
    assert_refused(*run_cli(["validate", str(tmp_path / "req.yaml")], capsys), ["is a directory", "request file"])


@pytest.mark.parametrize("encoding,bom", [("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE),
                                          ("utf-16-be", codecs.BOM_UTF16_BE)])
def test_request_file_with_a_bom_is_read(tmp_path, capsys, tiny_base, encoding, bom):
    (tmp_path / "data.jsonl").write_bytes(jsonl(GOOD_ROWS))
    text = GOOD_YAML.replace("org/tiny-base", str(tiny_base)) + "# caf\u00e9 \u2014 written by Notepad\n"
    (tmp_path / "req.yaml").write_bytes(bom + text.encode(encoding))
    code, err = run_cli(["validate", str(tmp_path / "req.yaml")], capsys)
    assert code == 0, err


def _without_root_override() -> dict:
    """subprocess arguments under which a file's mode applies even to root: the two capabilities that
    let root read any file are dropped from the bounding set before exec."""
    if os.geteuid() != 0:
        return {}

    def drop():
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return {"preexec_fn": drop}


def test_unreadable_request_file(tmp_path):
    path = tmp_path / "req.yaml"
    path.write_text(GOOD_YAML)
    path.chmod(0)
    p = subprocess.run([sys.executable, "-m", "factory", "validate", str(path)], capture_output=True, text=True,
                       **_without_root_override())
    assert_refused(p.returncode, p.stderr, ["permission denied", "chmod"])


# ---- dataset files ---------------------------------------------------------------------------------

def _truncated_parquet() -> bytes:
    whole = parquet_bytes(GOOD_ROWS)
    return whole[: len(whole) // 2]


DATA_CASES = [
    # (name, file name, content, type, extra request keys, words in the message)
    ("binary named .jsonl", "data.jsonl", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "alpaca", {},
     ["data.jsonl", "not UTF-8", "byte offset 0"]),
    ("UTF-16 JSON without a BOM", "data.json", json.dumps(GOOD_ROWS).encode("utf-16-le"), "alpaca", {},
     ["NUL byte", "without a byte-order mark"]),
    ("UTF-32 JSONL", "data.jsonl", codecs.BOM_UTF32_LE + jsonl(GOOD_ROWS).decode().encode("utf-32-le"), "alpaca", {},
     ["UTF-32", "save it as UTF-8"]),
    ("bad byte mid-file", "data.jsonl", jsonl(GOOD_ROWS) + b'{"instruction": "caf\xe9"}\n', "alpaca", {},
     ["not UTF-8", f"byte offset {len(jsonl(GOOD_ROWS)) + 20:,}"]),
    ("truncated mid-character", "data.jsonl", jsonl(GOOD_ROWS) + '{"instruction": "\u00e9'.encode()[:-1], "alpaca", {},
     ["ends in the middle of a character"]),
    ("empty JSONL", "data.jsonl", b"", "alpaca", {}, ["data.jsonl", "is empty"]),
    ("blank lines only", "data.jsonl", b"\n\n  \n", "alpaca", {}, ["has no rows"]),
    ("empty JSON file", "data.json", b"", "alpaca", {}, ["is empty"]),
    ("JSON scalar", "data.json", b"42\n", "alpaca", {}, ["holds a number", "not an array of rows"]),
    ("JSON object of scalars", "data.json", b'{"a": 1, "b": 2}', "alpaca", {}, ["holds an object", "not an array"]),
    ("JSON array of numbers", "data.json", b"[1, 2, 3]", "alpaca", {}, ["array of numbers", "not of objects"]),
    ("JSON array of strings", "data.json", b'["a", "b"]', "alpaca", {}, ["array of strings", "not of objects"]),
    ("broken JSON", "data.json", b'[{"instruction": "a", "output": "b"},\n {"instruction": }]', "alpaca", {},
     ["not valid JSON", "line 2"]),
    ("CSV row with too many fields", "data.csv",
     csv_text(["instruction,input,output"] + [f"q{i},,a{i}" for i in range(10)] + ["q,,a,EXTRA"]), "alpaca", {},
     ["line 12 has 4 fields, the header has 3", "malformed"]),
    ("CSV row with too few fields", "data.csv",
     csv_text(["instruction,input,output"] + [f"q{i},,a{i}" for i in range(10)] + ["only-one"]), "alpaca", {},
     ["line 12 has 1 fields, the header has 3"]),
    ("CSV header only", "data.csv", b"instruction,input,output\n", "alpaca", {}, ["has no rows"]),
    ("CSV without a header", "data.csv", b"\n", "alpaca", {}, ["no header"]),
    ("CSV unterminated quote", "data.csv", b'instruction,input,output\n"q,,a\n', "alpaca", {},
     ["line 2 has 1 fields", "a quote left open"]),
    ("CSV missing column", "data.csv", csv_text(["question,answer", "q,a"]), "alpaca", {},
     ["missing field 'instruction'", "question, answer"]),
    ("corrupted parquet", "data.parquet", b"PAR1" + bytes(range(256)) * 4, "alpaca", {}, ["not a readable Parquet"]),
    ("truncated parquet", "data.parquet", None, "alpaca", {}, ["not a readable Parquet", "export it again"]),
    ("numbers where text belongs", "data.jsonl", jsonl([{"instruction": 1, "output": 2}] * 3), "alpaca", {},
     ["none of its 3 rows", "'instruction' is a number, not text"]),
    ("a list where text belongs", "data.jsonl", jsonl([{"instruction": ["a"], "output": "b"}]), "alpaca", {},
     ["is a list, not text"]),
    ("null output", "data.jsonl", jsonl([{"instruction": "a", "output": None}]), "alpaca", {},
     ["'output' is null"]),
    ("null message content", "data.jsonl",
     jsonl([{"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "b"}]}]), "messages", {},
     ["turn 0 'content' is null"]),
    ("message without a role", "data.jsonl",
     jsonl([{"messages": [{"content": "a"}, {"role": "assistant", "content": "b"}]}]), "messages", {},
     ["turn 0 has no 'role'"]),
    ("unknown role", "data.jsonl",
     jsonl([{"messages": [{"role": "narrator", "content": "a"}, {"role": "assistant", "content": "b"}]}]), "messages",
     {}, ["unknown role 'narrator'", "roles:"]),
    ("empty conversation", "data.jsonl", jsonl([{"conversations": []}]), "sharegpt", {}, ["empty conversation"]),
    ("conversation is text", "data.jsonl", jsonl([{"conversations": "hello"}]), "sharegpt", {},
     ["is text, not a list of turns"]),
    ("rows that are arrays", "data.jsonl", b"[1, 2]\n[3]\n", "alpaca", {}, ["row is a list, not an object"]),
    ("lines that are not JSON", "data.jsonl", b"hello\nworld\n", "alpaca", {}, ["line 1 is not JSON"]),
    ("too many malformed", "data.jsonl", jsonl(GOOD_ROWS[:10] + [{"instruction": "x"}] * 2), "alpaca", {},
     ["2 of 12 rows", "max_malformed_fraction"]),
]


@pytest.mark.parametrize("name,file,content,type_,extra,words", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_broken_dataset_file(tmp_path, capsys, home, tiny_base, name, file, content, type_, extra, words):
    (tmp_path / file).write_bytes(_truncated_parquet() if content is None else content)
    req = request_for(tmp_path, tiny_base, file, type_, **extra)
    assert_refused(*run_cli(["prepare", str(req)], capsys), words)
    assert not list(home.glob("runs/*/data/encoded")), "a refused dataset left a data cache behind"
    assert not [p for p in home.glob("cache/encoded/*")], "a refused dataset left a cache entry behind"


def test_dataset_that_is_a_directory(tmp_path, capsys, home, tiny_base):
    (tmp_path / "data.jsonl").mkdir()
    req = request_for(tmp_path, tiny_base, "data.jsonl")
    assert_refused(*run_cli(["prepare", str(req)], capsys), ["is a directory"])


def test_unreadable_dataset_file(tmp_path, home, tiny_base):
    (tmp_path / "data.jsonl").write_bytes(jsonl(GOOD_ROWS))
    (tmp_path / "data.jsonl").chmod(0)
    req = request_for(tmp_path, tiny_base, "data.jsonl")
    p = subprocess.run([sys.executable, "-m", "factory", "prepare", str(req)], capture_output=True, text=True,
                       **_without_root_override())
    assert_refused(p.returncode, p.stderr, ["data.jsonl", "permission denied"])


def test_broken_file_in_a_hub_dataset(tmp_path, capsys, home, hub):
    hub.state.add_repo("dataset", "org/broken", {"data/train.jsonl": b"\x00\x01\x02 not text", "README.md": b"# x\n"})
    req = tmp_path / "req.yaml"
    req.write_text("base_model: org/tiny-base\nsequence_len: 128\ndatasets:\n  - path: org/broken\n")
    assert_refused(*run_cli(["prepare", str(req)], capsys), ["train.jsonl", "NUL byte", "byte offset 0"])


def test_a_100mb_line_is_one_malformed_row_read_in_bounded_memory(tmp_path, capsys, home, tiny_base):
    from factory.data.data import read_rows
    from factory.data.formats import Malformed

    path = tmp_path / "data.jsonl"
    with open(path, "wb") as f:
        f.write(jsonl(GOOD_ROWS[:1]))
        f.write(b'{"instruction": "' + b"x" * (100 << 20) + b'", "output": "y"}\n')
        f.write(jsonl(GOOD_ROWS[1:]))
    tracemalloc.start()
    rows = list(read_rows(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(rows) == 21 and isinstance(rows[1], Malformed) and "line 2 is 104,857,6" in str(rows[1])
    assert peak < 48 << 20, f"peak {peak / 2**20:.0f} MiB while streaming a 100 MiB line"
    req = request_for(tmp_path, tiny_base, "data.jsonl", max_malformed_fraction=0.01)
    assert_refused(*run_cli(["prepare", str(req)], capsys), ["line 2 is 104,857,", "characters long", "limit"])


@pytest.mark.parametrize("encoding,bom,suffix", [("utf-16-le", codecs.BOM_UTF16_LE, "json"),
                                                 ("utf-16-be", codecs.BOM_UTF16_BE, "jsonl"),
                                                 ("utf-16-le", codecs.BOM_UTF16_LE, "csv"),
                                                 ("utf-8", codecs.BOM_UTF8, "jsonl")])
def test_bom_encoded_datasets_load_and_say_so(tmp_path, home, encoding, bom, suffix):
    from factory.request.config import DatasetSpec
    from factory.data.data import DatasetReport, load_samples

    rows = [{"instruction": f"Qu'est-ce que {i}\u00a0?", "output": f"R\u00e9ponse {i} \u2014 ok"} for i in range(5)]
    text = {"json": json.dumps(rows, ensure_ascii=False),
            "jsonl": "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows),
            "csv": "instruction,output\r\n" + "".join(f'"{r["instruction"]}",{r["output"]}\r\n' for r in rows)}[suffix]
    path = tmp_path / f"data.{suffix}"
    path.write_bytes(bom + text.encode(encoding))
    report = DatasetReport("x")
    out = list(load_samples(DatasetSpec(path=str(path)), None, report))
    assert [s.messages[1][1] for s in out] == [r["output"] for r in rows]
    assert report.malformed == 0
    assert report.encodings == ([] if encoding == "utf-8" else [f"data.{suffix}: decoded from {encoding[:6].upper()} "
                                                               f"{encoding[-2:].upper()} with a BOM"])


def test_a_long_csv_cell_is_a_row(tmp_path):
    """Python's csv refuses fields over 128 KiB by default; a long answer is still one good row."""
    from factory.request.config import DatasetSpec
    from factory.data.data import DatasetReport, load_samples

    path = tmp_path / "long.csv"
    path.write_text("instruction,output\nsummarise,\"" + "word " * 60_000 + "\"\n")
    report = DatasetReport("x")
    out = list(load_samples(DatasetSpec(path=str(path)), None, report))
    assert report.malformed == 0 and len(out[0].messages[1][1]) == 300_000
