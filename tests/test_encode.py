"""Fast encoding (one render per conversation, batched, every core) gives exactly the prefix method's
masks on real templates and real data; the tokenised data is cached by what decides it."""

from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from factory.data.chat import BUILTIN_TEMPLATES, Encoded, encode
from factory.request.config import DatasetSpec
from factory.data.data import DatasetReport, load_samples
from factory.data.encode import encode_all, learn_shape
from factory.data.formats import Sample
from test_chat import templates  # tests/ is on sys.path under pytest


@pytest.fixture(scope="module")
def real_samples(shared):
    def load(name, type_, **kw):
        return list(load_samples(DatasetSpec(path=str(shared / name), type=type_, **kw), None, DatasetReport("x")))

    return (load("chat_sharegpt/fastchat_dummy_conversation.json", "sharegpt")
            + load("chat_sharegpt/llamafactory_glaive_toolcall_en_demo.json", "sharegpt",
                   roles={"assistant": ["function_call"], "user": ["observation"]})
            + load("chat_messages/openai_cookbook_toy_chat_fine_tuning.jsonl", "messages")
            + load("sft_alpaca/llamafactory_alpaca_en_demo.json", "alpaca")[:200])


@pytest.fixture(scope="module")
def phi3(shared):
    from transformers import AutoTokenizer

    from test_chat import MARKERS

    tok = AutoTokenizer.from_pretrained(shared / "tokenizers" / "phi-3-mini")
    tok.add_special_tokens({"additional_special_tokens": MARKERS})
    return tok


@pytest.mark.parametrize("family", ["chatml", "qwen2.5", "llama3", "mistral", "zephyr", "phi3"])
def test_fast_masks_equal_the_prefix_method_on_real_data(shared, phi3, real_samples, family):
    template = templates(shared, phi3)[family][0]
    samples, want = [], []
    for s in real_samples:
        try:
            want.append(encode(s, phi3, template, train_on_inputs=False))
            samples.append(s)
        except Exception:  # noqa: BLE001 - rows the template itself refuses (e.g. roles that do not alternate)
            continue
    assert len(samples) > 900, len(samples)
    got, stats = encode_all(samples, phi3, template, train_on_inputs=False, processes=1)
    assert stats["template_fast_path"] and stats["prefix_rows"] == 0, stats  # every row took the fast path
    assert got.to_list() == want
    turns = max(len(s.messages) for s in samples)
    assert turns >= 8, turns  # multi-turn rows are in the comparison


def test_a_template_that_transforms_replies_falls_back_and_stays_exact(tiny_tokenizer):
    shouting = BUILTIN_TEMPLATES["chatml"].replace("m['content']", "(m['content'] | upper)")
    assert learn_shape(tiny_tokenizer, shouting) is None
    samples = [Sample(messages=(("user", f"question {i}"), ("assistant", f"answer {i} is rain"),
                                ("user", "more"), ("assistant", "music"))) for i in range(30)]
    got, stats = encode_all(samples, tiny_tokenizer, shouting, train_on_inputs=False, processes=1)
    assert not stats["template_fast_path"] and stats["prefix_rows"] == 30
    assert got.to_list() == [encode(s, tiny_tokenizer, shouting, train_on_inputs=False) for s in samples]


def test_processes_give_the_same_result_in_the_same_order(tiny_tokenizer):
    samples = [Sample(messages=(("user", f"what is {i} about"), ("assistant", f"{i} is about music and rain")))
               for i in range(4500)] + [Sample(text=f"plain text {i}") for i in range(500)]
    seen = []
    one, _ = encode_all(samples, tiny_tokenizer, BUILTIN_TEMPLATES["chatml"], False, processes=1)
    two, stats = encode_all(samples, tiny_tokenizer, BUILTIN_TEMPLATES["chatml"], False, processes=2,
                            progress=lambda done, total, rate: seen.append((done, total)))
    assert stats["processes"] == 2 and two.to_list() == one.to_list()
    assert seen[-1] == (5000, 5000) and all(d <= t for d, t in seen)
    on_inputs, _ = encode_all(samples[4495:4505], tiny_tokenizer, BUILTIN_TEMPLATES["chatml"], True, processes=1)
    assert on_inputs.to_list() == [encode(s, tiny_tokenizer, BUILTIN_TEMPLATES["chatml"], True) for s in samples[4495:4505]]


def test_a_stream_is_read_only_a_few_chunks_ahead_and_lands_in_a_memory_mapped_entry(tiny_tokenizer, tmp_path):
    import numpy as np

    from factory.data.encode import encode_stream
    from factory.data.encoded_store import CacheWriter, EncodedArrays, Samples, open_entry
    from factory.data.row_chunks import CHUNK, Chunk

    pulled, ahead = 0, []

    def rows():
        nonlocal pulled
        for c in range(30):
            pulled += CHUNK
            yield Chunk("samples", [((("user", f"what is {i} about"), ("assistant", f"{i} is about rain")), None)
                                    for i in range(c * CHUNK, (c + 1) * CHUNK)])

    stale, fresh = tmp_path / ".entry.tmp-1-dead", tmp_path / ".entry.tmp-2-live"  # a killed writer's, a live one's
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (time.time() - 2 * 86_400,) * 2)
    writer = CacheWriter(tmp_path / "entry")
    assert not stale.exists() and fresh.exists()
    fresh.rmdir()
    done = 0

    def sink(_chunk, _outcomes, part):
        nonlocal done
        writer.add(part)
        done += len(part)
        ahead.append(pulled - done)

    stats = encode_stream(rows(), tiny_tokenizer, BUILTIN_TEMPLATES["chatml"], False, sink, processes=2)
    assert stats["processes"] == 2 and done == 30 * CHUNK
    assert max(ahead) <= 10 * CHUNK, max(ahead)  # 5 chunks looked at first, then 2 in flight per process
    encoded = writer.done({"template": "t", "reports": []})
    meta, again = open_entry(tmp_path / "entry")
    assert isinstance(again.ids, np.memmap) and meta["template"] == "t" and len(again) == 30 * CHUNK
    assert np.array_equal(again.trained_counts(), encoded.trained_counts()) and again.trained_counts().min() > 0
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # the temporary folder became the entry
    broken = CacheWriter(tmp_path / "other")
    broken.add(EncodedArrays.of(list(Samples(again, [0, 1]))))
    broken.abort()  # an interrupted run leaves nothing behind
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def _prepare(tmp_path, tiny_base, capsys, **extra) -> str:
    from factory.cli.main import main

    req = {"base_model": str(tiny_base), "datasets": [{"path": "d.jsonl"}], "sequence_len": 128,
           "chat_template": "chatml", **extra}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(req))
    assert main(["prepare", str(path)]) == 0
    return capsys.readouterr().out


def test_a_val_set_size_beyond_the_data_is_refused_before_tokenising(tmp_path, home, tiny_base, capsys):
    from factory.cli.main import main

    rows = [{"instruction": f"What is song {i} about?", "output": f"Song {i} is about rain."} for i in range(30)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"base_model": str(tiny_base), "datasets": [{"path": "d.jsonl"}], "val_set_size": 31, "sequence_len": 128,
                                    "chat_template": "chatml"}))
    assert main(["prepare", str(path)]) == 2
    out = capsys.readouterr()
    assert "val_set_size=31 leaves no training rows: the data files hold at most 31 rows" in out.out + out.err
    assert not list(home.glob("cache/encoded/*"))  # refused before anything was tokenised
    path.write_text(path.read_text().replace("val_set_size: 31", "val_set_size: 30"))  # 30 rows, all held out:
    assert main(["prepare", str(path)]) == 2  # known only once they are counted, as before
    out = capsys.readouterr()
    assert "val_set_size=30 leaves no training rows (only 30 rows)" in out.out + out.err


def test_the_tokenised_data_is_cached_by_what_decides_it(tmp_path, home, tiny_base, capsys):
    rows = [{"instruction": f"What is song {i} about?", "output": f"Song {i} is about rain."} for i in range(300)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "cache miss" in _prepare(tmp_path, tiny_base, capsys)
    run_ids, entry_ids = next(home.glob("runs/*/data/encoded/ids.i32")), next(home.glob("cache/encoded/*/ids.i32"))
    assert run_ids.stat().st_ino == entry_ids.stat().st_ino  # the run's samples link the entry: no copy of the tokens
    again = _prepare(tmp_path, tiny_base, capsys, logging_steps=3)  # another request, same data and tokenizer
    assert "cache hit" in again
    assert "cache hit" in _prepare(tmp_path, tiny_base, capsys, sequence_len=64)  # applied after the cache
    assert "cache miss" in _prepare(tmp_path, tiny_base, capsys, chat_template="zephyr")
    assert "cache miss" in _prepare(tmp_path, tiny_base, capsys, train_on_inputs=True)
    assert "cache hit" in _prepare(tmp_path, tiny_base, capsys, seed=7)  # another order and split of the same samples
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "e.jsonl").write_bytes((tmp_path / "d.jsonl").read_bytes())
    assert "cache hit" in _prepare(tmp_path, tiny_base, capsys, datasets=[{"path": "moved/e.jsonl"}])  # same bytes
    assert "cache miss" in _prepare(tmp_path, tiny_base, capsys, datasets=[  # another column mapping
        {"path": str(tmp_path / "d.jsonl"), "type": "alpaca", "field_instruction": "output", "field_output": "instruction"}])
    rows[5]["output"] = "Song 5 is about snow."
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "cache miss" in _prepare(tmp_path, tiny_base, capsys)


def test_a_runs_samples_are_read_from_the_memory_mapped_entry_cut_as_chosen(tmp_path, home, tiny_base, capsys):
    """Training reads each sample from disk when it batches it (bounded memory); what it reads is the
    entry's row, cut to sequence_len, in the chosen train and eval rows."""
    import numpy as np

    from factory.data import encoded_store

    rows = [{"instruction": f"What is song {i} about?", "output": f"Song {i} is about" + " rain" * (i % 40)}
            for i in range(200)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _prepare(tmp_path, tiny_base, capsys, sequence_len=48, excess_length_strategy="truncate", val_set_size=0.1)
    folder = next(home.glob("runs/*/data/encoded"))
    _, train, evalset = encoded_store.load(folder)
    _, entry, cut, train_rows, eval_rows = encoded_store.load_selection(folder)
    assert isinstance(train.entry.ids, np.memmap) and (len(train), len(evalset)) == (180, 20)
    whole = entry.to_list()
    for samples, chosen in ((train, train_rows), (evalset, eval_rows)):
        want = [Encoded(whole[r].input_ids[:cut[r]], whole[r].labels[:cut[r]]) for r in chosen]
        assert list(samples) == want and list(samples.lengths) == [len(e.input_ids) for e in want]
    assert max(train.lengths) == 48 and any(len(e.input_ids) > 48 for e in whole)  # some were cut


def test_the_data_stage_resolves_each_dataset_once(tmp_path, home, tiny_base, capsys, monkeypatch):
    """The cache key and every pass over the rows read the same files (a Hub dataset: the same revision)."""
    from factory.data import data

    rows = [{"instruction": f"What is song {i} about?", "output": f"Song {i} is about rain."} for i in range(50)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    calls = []
    real = data.dataset_files
    monkeypatch.setattr(data, "dataset_files", lambda spec, hub: calls.append(spec.path) or real(spec, hub))
    assert "cache miss" in _prepare(tmp_path, tiny_base, capsys, contamination={  # two passes over the rows
        "benchmarks": [f"songs={tmp_path / 'd.jsonl'}"], "policy": "warn"})
    assert len(calls) == 1, calls


def test_compact_arrays_round_trip_select_and_cut():
    from factory.data.chat import IGNORE
    from factory.data.encoded_store import EncodedArrays, Samples

    samples = [Encoded([1, 2, 3], [IGNORE, 2, 3]), Encoded([4], [IGNORE]), Encoded([5, 6, 7, 8], [5, IGNORE, 7, 8])]
    arrays = EncodedArrays.concat([EncodedArrays.of(samples[:2]), EncodedArrays.of(samples[2:])])
    assert arrays.to_list() == samples and list(arrays.lengths) == [3, 1, 4]
    assert list(arrays.trained_counts()) == [2, 0, 3]
    cut = Samples(arrays, [2, 0], [2, 1, 2])  # rows 2 then 0, each cut to two tokens
    assert list(cut) == [Encoded([5, 6], [5, IGNORE]), Encoded([1, 2], [IGNORE, 2])]
    assert list(cut.lengths) == [2, 2] and cut.tokens == 4 and cut[-1] == cut[1]
    with pytest.raises(IndexError):
        cut[2]
    assert list(arrays.trained_counts([2, 1, 2])) == [1, 0, 1]


@pytest.mark.parametrize("name,fast", [("qwen2.5", True), ("phi-3-mini", True), ("smollm3", True), ("qwen3", False)])
def test_which_real_templates_take_the_fast_path(shared, phi3, name, fast):
    """What the README says: Qwen3's template rewrites earlier turns (their reasoning), so its rows are
    encoded by prefix rendering; the others render once."""
    folder = shared / "tokenizers" / name
    template = ((folder / "chat_template.jinja").read_text() if (folder / "chat_template.jinja").is_file()
                else json.loads((folder / "tokenizer_config.json").read_text())["chat_template"])
    assert (learn_shape(phi3, template) is not None) == fast


@pytest.mark.parametrize("template,only_written", [
    (BUILTIN_TEMPLATES["chatml"], True), (BUILTIN_TEMPLATES["zephyr"], True), (BUILTIN_TEMPLATES["phi3"], True),
    (BUILTIN_TEMPLATES["llama3"], False),  # `| trim` on the content
    (BUILTIN_TEMPLATES["chatml"].replace("m['content']", "(m['content'] | upper)"), False),
    ("{% for m in messages %}{% if m['content'] %}{{ m['content'] }}{% endif %}{% endfor %}", False),  # tested
    ("{% for m in messages %}{{ m.get('content') }}{% endfor %}", False),
    ("{% for m in messages %}{{ m | tojson }}{% endfor %}", False),  # the whole message to a filter
    ("{% for m in messages %}{% set c = m['content'] %}{{ c }}{% endfor %}", False),
    ("{% for m in messages %}{% filter upper %}{{ m['content'] }}{% endfilter %}{% endfor %}", False),
    ("{% for m in messages %}{{ loop.previtem }}{{ m.content }}{% endfor %}", False),
    ("{{ messages | map(attribute='content') | join }}", False),
    ("{% for m in messages[1:] %}{{ m.role ~ ': ' ~ m.content }}{% endfor %}{{ messages[0]['content'] }}", True),
])
def test_which_templates_only_write_the_content(template, only_written):
    from factory.data.template_writes import content_only_written

    assert content_only_written(template) is only_written


def test_one_render_gives_the_prefix_methods_masks_even_with_marker_characters_in_the_text(tiny_tokenizer):
    """A template that only writes content is rendered once, with markers; a row whose own text holds the
    markers' characters (or their exact form) is encoded the reference way, and every row equals it."""
    from factory.data.encode import MARK

    template = BUILTIN_TEMPLATES["chatml"]
    samples = [Sample(messages=(("user", f"question {i}"), ("assistant", f" answer {i}\n"), ("user", "more"),
                                ("assistant", "music"))) for i in range(20)]
    samples += [Sample(messages=(("user", "say " + MARK.format(1)), ("assistant", MARK.format(1)))),
                Sample(messages=(("user", "odd \ue000 text"), ("assistant", "fine")))]
    got, stats = encode_all(samples, tiny_tokenizer, template, train_on_inputs=False, processes=1)
    assert stats["template_fast_path"] and stats["prefix_rows"] == 2, stats
    assert got.to_list() == [encode(s, tiny_tokenizer, template, train_on_inputs=False) for s in samples]
