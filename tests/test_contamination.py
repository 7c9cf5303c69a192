"""Contamination: planted benchmark items in the real Alpaca/ShareGPT files are found; the unplanted
files flag only the overlaps we have looked at; the CLI's JSON; the request's warn/block/drop policy."""

from __future__ import annotations

import json
import random
import re
import zlib
from pathlib import Path

import pytest

from evals.benchmarks import BUILTIN, load_benchmark, read_items, strings_of
from evals.contamination import check
from factory.data.decontaminate import rows_of

MAIN = ["gsm8k", "mmlu", "arc_easy", "arc_challenge", "truthfulqa"]
# The only overlaps in the unplanted shared files, each read by hand: a benchmark answer string that
# also occurs in a training row ("An apple a day keeps the doctor away." as a cloze answer, a
# Michael Jordan sentence, an ARC distractor "Earth revolves around the Sun and the Moon.").
KNOWN = {("arc_easy", 664), ("truthfulqa", 19), ("truthfulqa", 134)}


@pytest.fixture
def benchmarks(shared, monkeypatch):
    monkeypatch.setenv("FACTORY_BENCHMARKS_DIR", str(shared / "benchmarks"))
    return [load_benchmark(n) for n in MAIN]


def train_files(shared: Path) -> list[Path]:
    return sorted((shared / "sft_alpaca").iterdir()) + sorted((shared / "chat_sharegpt").iterdir())


def flagged(report: dict) -> set[tuple[str, int]]:
    return {(n, m["item"]) for n, b in report["benchmarks"].items() for m in b["matches"]}


def test_registry_reads_every_format(shared, benchmarks, tmp_path):
    assert [len(b.items) for b in benchmarks] == [1319, 3022, 2376, 1172, 790]
    mmlu = benchmarks[1].items[4]  # after the 4 items of llmfoundry_mmlu_small.jsonl (files in name order)
    assert mmlu[0].startswith("Based on the characteristic population curves") and "increase the mortality rate" in mmlu
    truthful = read_items(shared / "benchmarks" / "truthfulqa" / "mc_task.json")
    assert len(truthful) == 790 and strings_of(truthful[0], ("question",)) == [truthful[0]["question"]]
    gz = tmp_path / "b.jsonl.gz"
    import gzip

    with gzip.open(gz, "wt") as f:
        f.write(json.dumps({"q": "what is the airspeed of a swallow", "n": 3, "choices": ["a", 1]}) + "\n")
    assert load_benchmark(f"mine={gz}").items == [["what is the airspeed of a swallow", "a"]]
    with pytest.raises(ValueError, match="none of the fields nope hold text"):
        load_benchmark(f"mine={gz}", ("nope",))
    assert set(BUILTIN) >= {"gsm8k", "mmlu", "arc_easy", "arc_challenge", "truthfulqa", "winogrande", "hellaswag"}


def test_unplanted_real_files_flag_only_known_overlaps(shared, benchmarks):
    report, rows = check(rows_of(train_files(shared), None), benchmarks)
    items = sum(b["items"] for b in report["benchmarks"].values())
    assert flagged(report) == KNOWN
    assert len(flagged(report)) / items <= 0.005
    assert report["train_rows"] > 5000 and len(rows) == 3


def _case(t, rng):
    return rng.choice([str.upper, str.lower, str.swapcase, str.title])(t)


def _space(t, rng):
    return re.sub(r"\s+", lambda _: rng.choice([" ", "  ", "\n", "\t", " \n "]), t)


def _punct(t, rng):
    return re.sub(r"[^\w\s]", lambda _: rng.choice(["", " ", ",", "!"]), t)


def _embed(t, rng):
    return f"Here is a question from my homework; please help.\n\n{t}\n\nExplain your answer step by step, then give it."


VARIANTS = {"verbatim": lambda t, rng: t, "case": _case, "whitespace": _space, "punctuation": _punct,
            "embedded": _embed, "all at once": lambda t, rng: _embed(_punct(_space(_case(t, rng), rng), rng), rng)}


def plant(shared: Path, tmp_path: Path, benchmarks, variant, per_benchmark: int, seed: int):
    """Copies of the real training files with benchmark items written into random rows.

    Returns the files and {(benchmark, item): global row number}."""
    rng = random.Random(seed)
    chosen = [(b.name, i, "\n".join(b.items[i])) for b in benchmarks for i in rng.sample(range(len(b.items)), per_benchmark)]
    files, planted, offset = [], {}, 0
    sources = train_files(shared)
    plan = {}  # file index -> list of chosen items
    for k, c in enumerate(chosen):
        plan.setdefault(k % len(sources), []).append(c)
    for f_i, src in enumerate(sources):
        rows = read_items(src) if src.suffix == ".jsonl" else json.loads(src.read_text())
        targets = rng.sample(range(len(rows)), len(plan.get(f_i, [])))
        for (name, item, text), r in zip(plan.get(f_i, []), targets):
            row = dict(rows[r])
            text = variant(text, rng)
            if "conversations" in row:  # ShareGPT: the first human turn asks the benchmark question
                turns = [dict(t) for t in row["conversations"]]
                turns[0]["value"] = text
                row["conversations"] = turns
            else:
                key = next(k for k in ("instruction", "prompt", "text") if k in row)
                row[key] = text
            rows[r] = row
            planted[(name, item)] = offset + r
        out = tmp_path / f"{variant.__name__}-{src.name}"
        out.write_text("\n".join(json.dumps(r) for r in rows) + "\n" if src.suffix == ".jsonl" else json.dumps(rows))
        files.append(out)
        offset += len(rows)
    return files, planted


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_planted_items_are_found(shared, benchmarks, tmp_path, variant):
    fn = VARIANTS[variant]
    fn.__name__ = re.sub(r"\W", "_", variant)
    files, planted = plant(shared, tmp_path, benchmarks, fn, per_benchmark=120, seed=zlib.crc32(variant.encode()) % 1000)
    report, rows = check(rows_of(files, None), benchmarks)
    found = {(n, m["item"]) for n, b in report["benchmarks"].items() for m in b["matches"]
             if planted.get((n, m["item"])) in m["train_rows"]}
    recall = len(found & set(planted)) / len(planted)
    if variant == "verbatim":
        assert recall == 1.0, sorted(set(planted) - found)[:10]
    else:
        assert recall >= 0.99, (recall, sorted(set(planted) - found)[:10])
    # Items flagged that were not planted share real text with a planted item (MMLU questions on the
    # same passage, near-duplicate ARC/TruthfulQA items): every such match is in a planted row.
    extra = flagged(report) - set(planted) - KNOWN
    planted_rows = set(planted.values())
    for n, b in report["benchmarks"].items():
        for m in b["matches"]:
            if (n, m["item"]) in extra:
                assert set(m["train_rows"]) <= planted_rows, (n, m)
    assert planted_rows <= rows


def test_cli_writes_the_json_report(shared, benchmarks, tmp_path, capsys):
    from factory.cli.main import main

    bench = tmp_path / "mine.csv"
    bench.write_text("question,answer\nWhat is the boiling point of pure water at sea level in degrees Celsius?,100\n"
                     "Name the largest planet of the solar system and the number of its known moons,Jupiter\n")
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"instruction": "what is the BOILING point of pure water, at sea level in degrees "
                                               "celsius?", "output": "100"}) + "\n" +
                    json.dumps({"instruction": "Tell me a joke", "output": "No."}) + "\n")
    out = tmp_path / "report.json"
    assert main(["contamination", "--data", str(data), "--format", "alpaca", "--benchmark", f"mine={bench}",
                 "--benchmark", "gsm8k", "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert set(report) >= {"train_rows", "seconds", "benchmarks"} and report["train_rows"] == 2
    mine = report["benchmarks"]["mine"]
    assert (mine["items"], mine["contaminated"], mine["rate"]) == (2, 1, 0.5)
    assert {m["method"] for m in mine["matches"]} == {"ngram", "substring"}
    assert all(set(m) == {"item", "train_rows", "method", "evidence", "untrainable_rows"} and m["train_rows"] == [0]
               and m["untrainable_rows"] == [] for m in mine["matches"])
    assert (report["rows_read"], report["rows_scanned"], report["rows_training_would_drop"]) == (2, 2, 0)
    assert report["benchmarks"]["gsm8k"]["contaminated"] == 0
    printed = capsys.readouterr().out
    assert "mine" in printed and "50.00%" in printed and "paraphrase check skipped" in printed
    assert main(["contamination", "--data", str(data), "--benchmark", "mine=/no/such.csv"]) == 2
    assert main(["contamination", "--data", str(tmp_path / "nope.jsonl"), "--benchmark", "gsm8k"]) == 2


def test_audit_scans_rows_training_would_drop(shared, benchmarks, tmp_path, capsys):
    """Items planted into rows with an empty output (malformed for training) are found as surely as items
    in well-formed rows, marked as rows training would drop, and the summary counts both kinds."""
    from factory.cli.main import main

    src = shared / "sft_alpaca" / "alpaca_libre_tasks_v1.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    empty = [i for i, r in enumerate(rows) if not (r.get("output") or "").strip()]
    good = [i for i, r in enumerate(rows) if (r.get("output") or "").strip()]
    assert len(rows) == 2375 and len(empty) == 237
    rng = random.Random(7)
    gsm = benchmarks[0]
    items = rng.sample(range(len(gsm.items)), 40)
    targets = dict(zip(items, rng.sample(empty, 20) + rng.sample(good, 20)))
    for item, r in targets.items():
        rows[r] = {**rows[r], "instruction": gsm.items[item][0]}  # the question; outputs stay as they were
    data = tmp_path / "planted.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "audit.json"
    assert main(["contamination", "--data", str(data), "--format", "alpaca", "--benchmark", "gsm8k",
                 "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    matches = {m["item"]: m for m in report["benchmarks"]["gsm8k"]["matches"]}
    assert set(targets) <= set(matches)  # every planted item, in either kind of row
    for item, r in targets.items():
        assert r in matches[item]["train_rows"]
        assert (r in matches[item]["untrainable_rows"]) == (r in empty)
    assert (report["rows_read"], report["rows_scanned"], report["rows_training_would_drop"]) == (2375, 2375, 237)
    printed = capsys.readouterr().out
    assert "2,375 rows read, 2,375 scanned" in printed and "237 that training would drop" in printed
    assert "40 rows overlap, 20 of them rows training would drop" in printed


def test_embedding_method_plumbing_with_a_local_model(tiny_base, tmp_path):
    """Only the plumbing: identical texts match, which any model passes. How well the method separates
    paraphrases is unmeasured (no embedding model offline), and the CLI, report and README say so."""
    from evals.benchmarks import Benchmark

    bench = Benchmark("b", "mem", [["a question about rain and music in the city"], ["something else entirely"]])
    rows = [(0, "unrelated text about sport"), (1, "a question about rain and music in the city")]
    report, bad = check(lambda: iter(rows), [bench], embedding_model=tiny_base)
    emb = [m for m in report["benchmarks"]["b"]["matches"] if m["method"] == "embedding"]
    assert any(m["item"] == 0 and 1 in m["train_rows"] for m in emb) and 1 in bad
    assert "cosine" in report["embedding"] and "unmeasured" in report["embedding"]
    report, _ = check(lambda: iter(rows), [bench], embedding_model=tmp_path / "missing")
    assert "paraphrase check skipped" in report["embedding"]


# ---- the request's policy ----------------------------------------------------------------------

def _request(tmp_path, tiny_base, policy):
    import yaml

    bench = tmp_path / "quiz.jsonl"
    items = [{"question": f"Which instrument did the orchestra player number {i} bring to the rainy concert hall today?"}
             for i in range(5)]
    bench.write_text("".join(json.dumps(x) + "\n" for x in items))
    data = tmp_path / "docs.jsonl"
    rows = [{"text": f"document number {i} about music and rain"} for i in range(40)]
    rows += [{"text": f"Trivia: {items[i]['question']} A violin."} for i in range(3)]
    rows += [{"body": f"Trivia: {items[4]['question']}"}]  # malformed for completion (no `text`): never trained
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    req = tmp_path / f"{policy}.yaml"
    req.write_text(yaml.safe_dump({
        "base_model": str(tiny_base), "datasets": [{"path": "docs.jsonl", "type": "completion"}],
        "sequence_len": 64, "max_steps": 2, "hub_model_id": f"me/{policy}", "excess_length_strategy": "truncate",
        "contamination": {"benchmarks": ["quiz=quiz.jsonl"], "policy": policy},
    }))
    return req


def test_block_stops_before_training(home, tiny_base, tmp_path, capsys):
    from factory.cli.main import main

    assert main(["run", str(_request(tmp_path, tiny_base, "block"))]) == 2
    err = capsys.readouterr().err
    assert "3 training rows overlap" in err and "nothing was trained" in err
    run = next((home / "runs").iterdir())
    assert not (run / "checkpoints").exists() and not (run / "stages" / "data.json").exists()


def test_drop_removes_rows_and_the_card_says_so(home, tiny_base, tmp_path):
    from factory.cli.main import main

    assert main(["run", str(_request(tmp_path, tiny_base, "drop"))]) == 0
    run = next((home / "runs").iterdir())
    report = json.loads((run / "data" / "report.json").read_text())
    assert report["train_samples"] == 40 and report["contamination"]["rows_dropped"] == 3
    full = json.loads((run / "contamination.json").read_text())
    assert full["benchmarks"]["quiz"]["contaminated"] == 3
    card = (run / "README.md").read_text()
    assert "## Benchmark contamination" in card and "| quiz | 5 | 3 | 60.00% |" in card
    assert "dropped before training (3 rows)" in card and str(tmp_path) not in card
    assert full["malformed_rows_not_checked"] == 1 and "1 rows dropped as malformed were not checked" in card


def test_hub_download_takes_one_config_and_one_split(hub, monkeypatch):
    """ARC-Easy must not take ARC-Challenge's items, nor MMLU's `all` its subjects' (which repeat them)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    def parquet(tag: str, n: int) -> bytes:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([{"question": f"{tag} question {i}", "choices": ["a", "b"]}
                                             for i in range(n)]), buf)
        return buf.getvalue()

    hub.state.add_repo("dataset", "allenai/ai2_arc", {
        "ARC-Easy/test-00000-of-00001.parquet": parquet("easy-test", 3),
        "ARC-Easy/train-00000-of-00001.parquet": parquet("easy-train", 5),
        "ARC-Challenge/test-00000-of-00001.parquet": parquet("challenge-test", 4),
        "ARC-Challenge/validation-00000-of-00001.parquet": parquet("challenge-val", 2)})
    hub.state.add_repo("dataset", "cais/mmlu", {
        "all/test-00000-of-00001.parquet": parquet("all-test", 2),
        "abstract_algebra/test-00000-of-00001.parquet": parquet("all-test", 2),
        "all/dev-00000-of-00001.parquet": parquet("all-dev", 1)})
    hub.state.add_repo("dataset", "Rowan/hellaswag", {
        "data/validation-00000-of-00001.parquet": parquet("hs-val", 2),
        "data/test-00000-of-00001.parquet": parquet("hs-test", 3)})
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("FACTORY_BENCHMARKS_DIR", raising=False)
    for name, tag, n in [("arc_easy", "easy-test", 3), ("arc_challenge", "challenge-test", 4), ("mmlu", "all-test", 2),
                         ("hellaswag", "hs-val", 2)]:
        items = load_benchmark(name).items
        assert [i[0] for i in items] == [f"{tag} question {k}" for k in range(n)], name
