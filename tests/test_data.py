"""Prompt formats on the real files in ../shared/data, malformed-row reports, mixing and dedupe."""

from __future__ import annotations

import csv
import json

import pytest

from factory.request.config import DatasetSpec, parse_request
from factory.data.data import DatasetReport, load_samples, prepare
from factory.base.errors import UserError
from factory.data.formats import Malformed, normalise
from factory.hub.local import LocalHub


def samples(path, type_, **kw):
    report = DatasetReport(str(path))
    out = list(load_samples(DatasetSpec(path=str(path), type=type_, **kw), None, report))
    return out, report


def test_alpaca_real_file(shared):
    out, rep = samples(shared / "sft_alpaca/llamafactory_alpaca_en_demo.json", "alpaca")
    assert rep.rows == 999 and rep.malformed == 0 and len(out) == 999
    rows = json.loads((shared / "sft_alpaca/llamafactory_alpaca_en_demo.json").read_text())
    with_input = next(i for i, r in enumerate(rows) if r["input"].strip())
    roles = [r for r, _ in out[with_input].messages]
    assert roles == ["user", "assistant"]
    assert rows[with_input]["instruction"] in out[with_input].messages[0][1]
    assert rows[with_input]["input"] in out[with_input].messages[0][1]
    assert out[with_input].messages[1][1] == rows[with_input]["output"]


def test_alpaca_libre_empty_outputs_are_reported(shared):
    out, rep = samples(shared / "sft_alpaca/alpaca_libre_tasks_v1.jsonl", "alpaca")
    assert rep.rows == 2375 and rep.malformed > 0 and len(out) == rep.rows - rep.malformed
    assert all("row" in e and "empty 'output'" in e for e in rep.examples)


def test_sharegpt_multi_turn(shared):
    out, rep = samples(shared / "chat_sharegpt/fastchat_dummy_conversation.json", "sharegpt")
    assert rep.malformed == 0 and len(out) == 500
    first = json.loads((shared / "chat_sharegpt/fastchat_dummy_conversation.json").read_text())[0]
    assert [r for r, _ in out[0].messages] == ["user", "assistant"] * (len(first["conversations"]) // 2)
    assert out[0].messages[0][1] == first["conversations"][0]["value"]


def test_sharegpt_unknown_roles_counted_then_mapped(shared):
    path = shared / "chat_sharegpt/llamafactory_glaive_toolcall_en_demo.json"
    out, rep = samples(path, "sharegpt")
    assert rep.malformed > 0 and "unknown role 'function_call'" in rep.examples[0]
    out2, rep2 = samples(path, "sharegpt", roles={"assistant": ["function_call"], "user": ["observation"]})
    assert rep2.malformed == 0 and len(out2) == 300


def test_messages_with_system_and_toy_rows(shared):
    out, rep = samples(shared / "chat_messages/openai_cookbook_toy_chat_fine_tuning.jsonl", "messages")
    assert rep.rows == 5 and len(out) == 5
    assert out[0].messages[0][0] == "system"
    assert len(out[4].messages[-1][1]) > 10_000  # the over-long row survives to the length check


def test_messages_kto_demo(shared):
    out, rep = samples(shared / "chat_messages/llamafactory_kto_en_demo.json", "messages")
    assert rep.malformed == 0 and len(out) == 300


def test_completion(shared):
    out, rep = samples(shared / "pretrain_text/llamafactory_c4_demo.jsonl", "completion")
    assert len(out) == 300 and out[0].text and not out[0].messages


@pytest.mark.parametrize("row, spec, reason", [
    ({"instruction": "hi"}, {"type": "alpaca"}, "missing field 'output'"),
    ({"instruction": 3, "output": "x"}, {"type": "alpaca"}, "is a number, not text"),
    ({"instruction": "q", "output": "  "}, {"type": "alpaca"}, "empty 'output'"),
    ({"conversations": []}, {"type": "sharegpt"}, "empty conversation"),
    ({"conversations": [{"from": "human", "value": ""}]}, {"type": "sharegpt"}, "is empty"),
    ({"conversations": [{"from": "wizard", "value": "x"}]}, {"type": "sharegpt"}, "unknown role 'wizard'"),
    ({"messages": [{"role": "user", "content": "hi"}]}, {"type": "messages"}, "no assistant turn"),
    ({"messages": [{"role": "user", "content": None}]}, {"type": "messages"}, "not text"),
    ("just a string", {"type": "messages"}, "not an object"),
    ({"body": "x"}, {"type": "completion"}, "missing field 'text'"),
])
def test_malformed_reasons(row, spec, reason):
    with pytest.raises(Malformed, match=reason):
        normalise(row, DatasetSpec(path="o/d", **spec))


def test_column_mapping():
    spec = DatasetSpec(path="o/d", type="alpaca", field_instruction="q", field_output="a", field_system="sys")
    s = normalise({"q": "Q?", "a": "A.", "sys": "Be brief."}, spec)
    assert s.messages == (("system", "Be brief."), ("user", "Q?"), ("assistant", "A."))
    spec = DatasetSpec(path="o/d", type="messages", field_messages="chat",
                       message_property_mappings={"role": "speaker", "content": "text"})
    s = normalise({"chat": [{"speaker": "user", "text": "a"}, {"speaker": "assistant", "text": "b"}]}, spec)
    assert s.messages == (("user", "a"), ("assistant", "b"))
    assert normalise({"body": "raw"}, DatasetSpec(path="o/d", type="completion", field="body")).text == "raw"


def _write_mixed(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(50)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:5]) + "not json\n")
    with open(tmp_path / "b.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["instruction", "output"])
        w.writeheader()
        w.writerows(rows[:10] + [{"instruction": f"c{i}", "output": f"d{i}"} for i in range(20)])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"text": f"doc {i}"} for i in range(30)]), tmp_path / "c.parquet")


@pytest.mark.parametrize("bounds", ["[:20%]", "[10:15]", "[-5:]", "[90%:]", "[-10:-5]", "[95:]", "[:0]"])
def test_a_split_slice_keeps_its_rows_in_file_order_and_counts_every_row(tmp_path, bounds):
    """datasets' slice syntax over the usable samples, without holding them: the report still counts
    every row of the file (two are malformed here)."""
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(100)] + [{"instruction": "q"}, {"output": "a"}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    whole, _ = samples(path, "alpaca")
    part, report = samples(path, "alpaca", split="train" + bounds)
    lo, hi = bounds[1:-1].split(":")

    def bound(text):
        return None if not text else round(100 * int(text[:-1]) / 100) if text.endswith("%") else int(text)

    assert part == whole[bound(lo):bound(hi)]
    assert (report.rows, report.malformed) == (102, 2)


def test_mix_dedupe_and_split(tmp_path):
    _write_mixed(tmp_path)
    req = parse_request({"base_model": "o/b", "val_set_size": 0.1, "max_malformed_fraction": 0.1, "datasets": [
        {"path": str(tmp_path / "a.jsonl")}, {"path": str(tmp_path / "b.csv")},
        {"path": str(tmp_path / "c.parquet"), "type": "completion"}]})
    prep = prepare(req, None)
    a, b, c = prep.reports
    assert (a.rows, a.used, a.duplicates, a.malformed) == (56, 50, 5, 1)
    assert "row 56" in a.examples[0] and "not JSON" in a.examples[0]
    assert (b.used, b.duplicates) == (20, 10)  # duplicates across datasets are removed too
    assert c.used == 30
    assert len(prep.train) + len(prep.eval) == 100 and len(prep.eval) == 10
    keys = [s.key() for s in prep.train + prep.eval]
    assert len(set(keys)) == len(keys)


def test_too_many_malformed_fails_with_rows(tmp_path):
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps({"instruction": "q", "output": ""}) + "\n" for _ in range(5))
                                        + json.dumps({"instruction": "q", "output": "a"}) + "\n")
    req = parse_request({"base_model": "o/b", "datasets": [{"path": str(tmp_path / "bad.jsonl")}]})
    with pytest.raises(UserError, match=r"(?s)5 of 6 rows .* malformed.*row 1: empty 'output'"):
        prepare(req, None)


def test_hub_dataset_split_files(tmp_path):
    hub = LocalHub(tmp_path / "hub")
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "data" / "train-00000.jsonl").write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    (src / "data" / "test-00000.jsonl").write_text(json.dumps({"instruction": "t", "output": "u"}) + "\n")
    hub.publish("org/ds", src, "add", repo_type="dataset")
    req = parse_request({"base_model": "o/b", "datasets": [{"path": "org/ds", "split": "test"}]})
    assert prepare(req, hub).train[0].messages[0] == ("user", "t")
    with pytest.raises(UserError, match="no files for split 'validation'"):
        prepare(parse_request({"base_model": "o/b", "datasets": [{"path": "org/ds", "split": "validation"}]}), hub)
    with pytest.raises(UserError, match="not in the local hub"):
        prepare(parse_request({"base_model": "o/b", "datasets": [{"path": "org/missing"}]}), hub)
