"""Preference training: the row shapes people publish, bad pairs counted (not crashes), the request's keys, each
method end to end on a tiny model (trained, merged, judged on held-out pairs, carded, published), and the
preference files in ../shared/data."""

from __future__ import annotations

import json

import pytest
import yaml

from factory.base.errors import UserError
from factory.data.formats import Malformed
from factory.data.pairs import Pair, SamePair, read
from factory.request.config import DatasetSpec, parse_request
from test_front_door import local_hub  # noqa: F401 - a fixture


def spec(**kw) -> DatasetSpec:
    return DatasetSpec(path="o/d", **{"type": "preference", **kw})


USER, SYS = ("user", "What is 2+2?"), ("system", "Be brief.")

# (what, row, spec keys, expected prompt, chosen, rejected)
SHAPES = [
    ("TRL text prompt/chosen/rejected", {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}, {},
     (USER,), "4", "5"),
    ("TRL conversational, explicit prompt", {"prompt": [{"role": "user", "content": "What is 2+2?"}],
                                             "chosen": [{"role": "assistant", "content": "4"}],
                                             "rejected": [{"role": "assistant", "content": "5"}]}, {}, (USER,), "4", "5"),
    ("TRL implicit prompt / chat_template.argilla_chat",
     {"chosen": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
      "rejected": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "5"}]}, {},
     (USER,), "4", "5"),
    ("Axolotl chat_template.default (field_messages -> field_prompt, role mappings)",
     {"conversation": [{"from": "system", "text": "Be brief."}, {"from": "human", "text": "What is 2+2?"}],
      "good": {"from": "bot", "text": "4"}, "bad": {"from": "bot", "text": "5"}},
     {"field_prompt": "conversation", "field_chosen": "good", "field_rejected": "bad",
      "message_property_mappings": {"role": "from", "content": "text"},
      "roles": {"assistant": ["bot"], "user": ["human"], "system": ["system"]}}, (SYS, USER), "4", "5"),
    ("chatml.intel (system, question)", {"system": "Be brief.", "question": "What is 2+2?", "chosen": "4",
                                         "rejected": "5"}, {}, (SYS, USER), "4", "5"),
    ("chatml.icr (input)", {"input": "What is 2+2?", "chosen": "4", "rejected": "5"}, {}, (USER,), "4", "5"),
    ("chatml.default with *_response", {"instruction": "What is 2+2?", "chosen_response": "4",
                                        "rejected_response": "5"}, {}, (USER,), "4", "5"),
    ("chatml.ultra (the answers repeat the prompt)",
     {"prompt": "What is 2+2?", "chosen": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
      "rejected": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "5"}]}, {},
     (USER,), "4", "5"),
    ("LLaMA-Factory ShareGPT pairs",
     {"conversations": [{"from": "human", "value": "What is 2+2?"}], "chosen": {"from": "gpt", "value": "4"},
      "rejected": {"from": "gpt", "value": "5"}}, {}, (USER,), "4", "5"),
    ("HH-RLHF transcripts",
     {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: What is 2+2?\n\nAssistant: 4",
      "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: What is 2+2?\n\nAssistant: 5"}, {},
     (("user", "Hi"), ("assistant", "Hello"), USER), "4", "5"),
]


@pytest.mark.parametrize("what,row,keys,prompt,chosen,rejected", SHAPES, ids=[s[0] for s in SHAPES])
def test_each_published_shape_reads_as_the_same_pair(what, row, keys, prompt, chosen, rejected):
    assert read(row, spec(**keys)) == Pair(prompt, chosen, rejected)


def test_user_defined_formats_make_a_raw_text_prompt():
    s = spec(field_prompt="q", field_chosen="a", field_rejected="b", prompt_format="[{system}] Q: {prompt}\nA:",
             chosen_format=" {chosen}")
    pair = read({"q": "2+2?", "a": "4", "b": "5", "system": "math"}, s)
    assert pair.raw_prompt == "[math] Q: 2+2?\nA:" and pair.chosen == " 4" and pair.rejected == "5"
    with pytest.raises(ValueError, match="may name only"):
        spec(prompt_format="{question}")


def test_kto_rows_and_their_axolotl_shapes():
    kto = DatasetSpec(path="o/d", type="kto")
    assert read({"prompt": "2+2?", "completion": "4", "label": True}, kto) == Pair((("user", "2+2?"),), "4", None, True)
    argilla = read({"system": "s", "instruction": "2+2?", "completion": "5", "label": False}, kto)
    assert argilla.prompt == (("system", "s"), ("user", "2+2?")) and argilla.label is False
    chat = read({"completion": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
                 "label": True}, kto)  # argilla_chat: the prompt inside the completion's conversation
    assert chat.prompt == (("user", "2+2?"),) and chat.chosen == "4"
    with pytest.raises(Malformed, match="missing field 'label'"):
        read({"prompt": "2+2?", "completion": "4"}, kto)
    with pytest.raises(Malformed, match="'label' is text, not true or false"):
        read({"prompt": "2+2?", "completion": "4", "label": "yes"}, kto)


@pytest.mark.parametrize("row,problem", [
    ({"prompt": "q", "rejected": "5"}, "no chosen column"),
    ({"prompt": "q", "chosen": "4", "rejected": "  "}, "empty 'rejected'"),
    ({"prompt": "q", "chosen": "4", "rejected": 5}, "not text or a list of messages"),
    ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "4"}],
      "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "5"}]}, "different conversations"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "4"}], "rejected": "5"}, "not the assistant's answer"),
    (["not", "an", "object"], "not an object"),
])
def test_rows_that_are_no_pair_say_why(row, problem):
    with pytest.raises(Malformed, match=problem):
        read(row, spec())


def test_an_equal_pair_is_its_own_kind_of_drop():
    with pytest.raises(SamePair):
        read({"prompt": "q", "chosen": "4 ", "rejected": "4"}, spec())


# ---- the data stage's counts ----------------------------------------------------------------------

def _request(tmp_path, rows, **kw):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return parse_request({"base_model": "o/m", "rl": "dpo", "datasets": [{"path": str(data), "type": "preference"}],
                          "max_malformed_fraction": 0.5, **kw}), data


def test_bad_pairs_are_counted_not_crashed_on(tmp_path, tiny_tokenizer):
    from factory.data.chat import BUILTIN_TEMPLATES, in_process
    from factory.data.pair_data import load_pairs, prepare

    good = [{"prompt": f"question {i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(12)]
    rows = good + [{"prompt": "q", "rejected": "no"},  # missing chosen
                   {"prompt": "q", "chosen": "yes", "rejected": ""},  # empty rejected
                   {"prompt": "q", "chosen": "same", "rejected": "same"},  # equal pair
                   {"prompt": "q", "chosen": "short", "rejected": "word " * 200},  # rejected longer than sequence_len
                   good[0]]  # a duplicate
    request, data = _request(tmp_path, rows, sequence_len=64, val_set_size=2)
    pairs, reports = load_pairs(request, [([data], None)])
    (r,) = reports
    assert (r.rows, r.used, r.malformed, r.same, r.duplicates) == (17, 13, 2, 1, 1)
    assert any("no chosen column" in e for e in r.examples) and any("empty 'rejected'" in e for e in r.examples)
    render = in_process(tiny_tokenizer, BUILTIN_TEMPLATES["chatml"])
    data_set = prepare(request, pairs, reports, tiny_tokenizer, render)
    assert data_set.counts["over_long"] == 1
    assert len(data_set.train) + len(data_set.held_out) == 12 and len(data_set.held_out) == 2
    truncated = prepare(request.model_copy(update={"excess_length_strategy": "truncate"}), pairs, reports,
                        tiny_tokenizer, render)
    assert truncated.counts["over_long"] == 0 and max(t.longest() for t in truncated.train + truncated.held_out) <= 64


def test_a_dataset_of_equal_pairs_is_refused_in_words(tmp_path):
    from factory.data.pair_data import load_pairs

    request, data = _request(tmp_path, [{"prompt": "q", "chosen": "a", "rejected": "a"}] * 3)
    with pytest.raises(UserError, match="chosen equals rejected; there is no preference to learn"):
        load_pairs(request, [([data], None)])


def test_tokens_follow_trls_rule(tiny_tokenizer):
    """The prompt rendered with a generation prompt; each answer is what follows the shared prefix."""
    from factory.data.chat import BUILTIN_TEMPLATES, in_process
    from factory.data.pair_data import tokenise

    render = in_process(tiny_tokenizer, BUILTIN_TEMPLATES["chatml"])
    t = tokenise(Pair((USER,), "4", "five"), tiny_tokenizer, render)
    ids = tiny_tokenizer("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
                         add_special_tokens=False)["input_ids"]
    assert t.prompt + t.chosen == ids and tiny_tokenizer.decode(t.chosen) == "4<|im_end|>\n"
    raw = tokenise(Pair((), "4", "5", raw_prompt="Q: 2+2? A: "), tiny_tokenizer, render)
    assert raw.chosen[-1] == tiny_tokenizer.eos_token_id  # text answers end with EOS, as TRL's


# ---- the request ------------------------------------------------------------------------------------

def _req(**kw):
    return parse_request({"base_model": "o/m", "datasets": [{"path": "o/d", "type": "preference"}], **kw})


def test_the_request_takes_axolotls_keys_and_defaults():
    r = _req(rl="dpo")
    assert r.beta == 0.1 and r.val_set_size == 0.1  # judged on held-out pairs unless told otherwise
    assert _req(rl="ipo", rl_beta=0.5).beta == 0.5
    assert _req(rl="orpo", orpo_alpha=0.2).beta == 0.2
    assert _req(rl="dpo", dpo_beta=0.3).beta == 0.3  # Axolotl's older spelling
    assert _req(rl="dpo", val_set_size=0).val_set_size == 0
    simpo = _req(rl="simpo")
    assert (simpo.simpo_gamma, simpo.cpo_alpha) == (0.5, 1.0)  # TRL's CPOConfig defaults, as Axolotl passes them
    speed = _req(rl="dpo", rl_adapter_ref_model=True, dpo_use_weighting=False, precompute_ref_log_probs=True)
    assert "rl_adapter_ref_model" in speed.compat.ignored_here and "dpo_use_weighting" in speed.compat.no_effect
    for bad, message in [({"rl": "orpo", "rl_beta": 0.1}, "orpo_alpha, not rl_beta"),
                         ({"rl": "ipo", "dpo_loss_type": ["hinge"]}, "dpo_loss_type applies to rl: dpo"),
                         ({"rl": "dpo", "dpo_loss_type": ["sigmoid", "hinge"], "dpo_loss_weights": [1.0]},
                          "one weight per dpo_loss_type"),
                         ({"rl": "dpo", "dpo_loss_type": ["exo_pair"]}, "dpo_loss_type"),
                         ({"rl_beta": 0.1}, "datasets of type preference or kto need rl")]:
        with pytest.raises(UserError, match=message):
            _req(**bad)
    with pytest.raises(UserError, match="KTO's unpaired rows need rl: kto"):
        parse_request({"base_model": "o/m", "rl": "dpo", "datasets": [{"path": "o/d", "type": "kto"}]})


@pytest.mark.parametrize("rl,message", [("grpo", "rl: grpo samples answers"), ("gdpo", "rl: gdpo, GRPO with several"),
                                        ("ebft", "energy-based finetuning")])
def test_online_rl_is_refused_by_capability_each_in_its_words(rl, message):
    with pytest.raises(UserError, match=message):
        _req(rl=rl)


def test_axolotl_preference_types_translate():
    r = parse_request({"base_model": "o/m", "rl": "dpo", "datasets": [
        {"path": "o/a", "type": "chatml.intel"}, {"path": "o/b", "type": "chat_template.default",
                                                  "field_messages": "conversation", "field_chosen": "c"},
        {"path": "o/c", "type": {"field_prompt": "q", "prompt_format": "{prompt}"}}]})
    assert [d.type for d in r.datasets] == ["preference"] * 3 and r.chat_template == "chatml"
    assert r.datasets[1].field_prompt == "conversation" and r.datasets[1].field_chosen == "c"
    assert r.datasets[2].field_prompt == "q" and r.datasets[2].prompt_format == "{prompt}"
    kto = parse_request({"base_model": "o/m", "rl": "kto", "micro_batch_size": 2,
                         "datasets": [{"path": "o/a", "type": "llama3.ultra"}]})
    assert kto.datasets[0].type == "kto" and kto.chat_template == "llama3"
    with pytest.raises(UserError, match="a preference dataset type without rl:"):
        parse_request({"base_model": "o/m", "datasets": [{"path": "o/a", "type": "chatml.intel"}]})


def test_axolotls_preference_example_configs_validate(shared):
    from factory.request.config import load_request

    for name, rl in [("llama-3__instruct-dpo-lora-8b.yml", "dpo"), ("mistral__orpo__mistral-qlora-orpo.yml", "orpo"),
                     ("llama-3__qlora-1b-kto.yaml", "kto"), ("mistral__dpo__mistral-dpo-qlora.yml", "dpo"),
                     ("llama-3__lora-1b-deduplicate-dpo.yml", "dpo"), ("swanlab__dpo-swanlab-full-featured.yml", "dpo")]:
        request = load_request(shared / "axolotl_examples" / name)
        assert request.rl == rl and {d.type for d in request.datasets} <= {"preference", "kto"}, name


# ---- the preference files in ../shared/data -----------------------------------------------------------

def test_the_shared_preference_files_read_as_pairs(shared):
    from factory.data.pair_data import load_pairs

    lf = shared / "preference" / "llamafactory_dpo_en_demo.json"
    hh = shared / "preference" / "hh_rlhf_harmless_base_test.jsonl.gz"
    request = parse_request({"base_model": "o/m", "rl": "dpo", "datasets": [
        {"path": str(lf), "type": "preference"}, {"path": str(hh), "type": "preference"}]})
    pairs, (r_lf, r_hh) = load_pairs(request, [([lf], None), ([hh], None)])
    assert (r_lf.rows, r_lf.used, r_lf.malformed, r_lf.duplicates) == (300, 295, 0, 5)  # the demo repeats 5 rows
    assert r_hh.rows == 2312 and r_hh.used + r_hh.malformed + r_hh.same + r_hh.duplicates == 2312
    # the release's own flaws, each named: an empty last answer, or two transcripts that differ before it
    assert r_hh.malformed == 9 and all("empty 'chosen'" in e or "answer different conversations" in e
                                       for e in r_hh.examples)
    hh_pair = pairs[295]
    assert hh_pair.prompt[0][0] == "user" and hh_pair.prompt[-1][0] == "user" and hh_pair.chosen != hh_pair.rejected
    multi = [p for p in pairs[:295] if len(p.prompt) > 1]
    assert multi and all(p.prompt[-1][0] == "user" for p in multi)  # multi-turn ShareGPT prompts end with the user
    kto_file = shared / "chat_messages" / "llamafactory_kto_en_demo.json"  # LLaMA-Factory's KTO: messages + label
    kto = parse_request({"base_model": "o/m", "rl": "kto", "micro_batch_size": 2,
                         "datasets": [{"path": str(kto_file), "type": "kto"}]})
    completions, (r_kto,) = load_pairs(kto, [([kto_file], None)])
    assert r_kto.rows == 300 and r_kto.malformed == 0 and r_kto.used + r_kto.duplicates == 300
    assert {c.label for c in completions} == {True, False} and all(c.prompt[-1][0] == "user" for c in completions)


# ---- each method, end to end -------------------------------------------------------------------------

def _pairs_file(tmp_path):
    rows = [{"prompt": f"What is {i} plus one?", "chosen": f"{i + 1}", "rejected": f"{i + 7} or so"} for i in range(40)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _kto_file(tmp_path):
    rows = [{"prompt": f"What is {i} plus one?", "completion": f"{i + 1}" if i % 2 else f"{i + 7} or so",
             "label": bool(i % 2)} for i in range(40)]
    path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


METHODS = [("dpo", {"adapter": "lora"}), ("ipo", {"adapter": "lora"}), ("orpo", {}), ("simpo", {"adapter": "lora"}),
           ("kto", {"adapter": "lora"}), ("dpo", {"adapter": "qlora", "load_in_4bit": True})]


@pytest.mark.parametrize("rl,method", METHODS, ids=[f"{m[0]}-{m[1].get('adapter', 'full')}" for m in METHODS])
def test_each_method_trains_judges_and_publishes(rl, method, home, tiny_base, tmp_path, capsys):
    """KTO here trains on pairs (unpaired as TRL does) and is judged on the held-out pairs."""
    from factory.cli.main import main
    from factory.hub.local import LocalHub

    if method.get("adapter") == "qlora":
        pytest.importorskip("bitsandbytes")
    data = _pairs_file(tmp_path)
    adapter = {**method, "lora_target_linear": True} if method else {}
    req = tmp_path / "req.yaml"
    req.write_text(yaml.safe_dump({
        "base_model": str(tiny_base), "rl": rl, "datasets": [{"path": data.name, "type": "preference"}],
        "micro_batch_size": 4, "max_steps": 3, "learning_rate": 1e-3, "sequence_len": 128, "logging_steps": 1,
        "val_set_size": 8, "hub_model_id": f"me/tiny-{rl}", **adapter}))
    assert main(["run", str(req)]) == 0, capsys.readouterr().err
    run = next((home / "runs").iterdir())
    table = json.loads((run / "preference.json").read_text())
    assert table["method"] == rl and table["pairs"] >= 1 and set(table["models"]) == {"base", "finetuned"}
    assert table["per_token"] == (rl in ("orpo", "simpo"))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = {k for m in metrics for k in m}
    assert ("kl" in logged) if rl == "kto" else {"rewards/margins", "logps/chosen", "logps/rejected"} <= logged
    card = (run / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert rl in meta["tags"] and "base_model" not in meta  # a local base folder is never named
    assert "## Preference on held-out pairs (base vs finetuned)" in card and "| finetuned |" in card
    from factory.publish.card import RL_NAMES

    assert f"trained on preferences with {RL_NAMES[rl]}" in card
    assert LocalHub(home / "hub").exists(f"me/tiny-{rl}")
    assert (run / "merged" / "margin.svg").is_file() == (rl != "kto")  # KTO has no pairs in training: no margin


def test_kto_on_labelled_completions(home, tiny_base, tmp_path, capsys):
    """KTO's own rows: trained; held-out completions are judged only where a desirable and an undesirable one share
    a prompt, and the card says when there were none."""
    from factory.cli.main import main

    data = _kto_file(tmp_path)
    req = tmp_path / "req.yaml"
    req.write_text(yaml.safe_dump({
        "base_model": str(tiny_base), "rl": "kto", "datasets": [{"path": data.name, "type": "kto"}],
        "adapter": "lora", "lora_target_linear": True, "micro_batch_size": 4, "max_steps": 2, "sequence_len": 128,
        "val_set_size": 4, "publish": {"enabled": False}}))
    assert main(["run", str(req)]) == 0, capsys.readouterr().err
    run = next((home / "runs").iterdir())
    assert not (run / "preference.json").exists()  # every prompt has one completion: nothing to pair
    assert "No held-out pairs to judge on" in (run / "README.md").read_text()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("kl" in m and ("rewards/desirable" in m or "rewards/undesirable" in m) for m in metrics)


def test_kto_needs_two_completions_per_micro_batch():
    with pytest.raises(UserError, match="micro_batch_size of at least 2"):
        parse_request({"base_model": "o/m", "rl": "kto", "datasets": [{"path": "o/d", "type": "kto"}]})


# ---- front doors ----------------------------------------------------------------------------------------

def _stranger_dpo(**over) -> dict:
    return {"base_model": "org/tiny-base", "rl": "dpo", "datasets": [{"path": "org/pairs", "type": "preference"}],
            "sequence_len": 64, "max_steps": 2, "micro_batch_size": 2, "adapter": "lora", "lora_target_linear": True,
            "chat_template": "chatml", "val_set_size": 4, "hub_model_id": "alice/tiny-dpo", **over}


@pytest.fixture
def pairs_hub(local_hub, tmp_path):
    folder = tmp_path / "pairs-repo"
    folder.mkdir()
    _pairs_file(folder)
    local_hub.publish("org/pairs", folder, "pairs", "dataset")
    return local_hub


def test_a_strangers_dpo_job_runs_through_the_queue_and_its_limits_count_both_sequences(pairs_hub, home):
    from factory.queue.jobs import Limits, Store
    from factory.queue.worker import Worker

    store = Store(f"sqlite:///{home / 'jobs.db'}", Limits(0, 0))
    over = _stranger_dpo(micro_batch_size=16, gradient_accumulation_steps=40, sequence_len=1024)  # 655k tokens x 2
    with pytest.raises(UserError, match=r"limit max_batch_tokens.*x 2 \(each pair trains two sequences\)"):
        store.submit(yaml.safe_dump(over), "hf:alice", "space")
    sft = {k: v for k, v in over.items() if k not in ("rl", "val_set_size")} | {
        "datasets": [{"path": "org/songs", "type": "alpaca"}]}
    store.submit(yaml.safe_dump(sft), "hf:alice", "space")  # the same batch of single sequences is within the limit
    store.cancel(store.list()[0].id, "hf:alice")
    with pytest.raises(UserError, match="prompt_format.*may name only"):
        store.submit(yaml.safe_dump(_stranger_dpo(datasets=[{"path": "org/pairs", "type": "preference",
                                                             "prompt_format": "{prompt:>999999999}"}])), "hf:alice", "space")
    job_id = store.submit(yaml.safe_dump(_stranger_dpo()), "hf:alice", "space")
    Worker(store, "w").run(drain=True)
    job = store.get(job_id)
    assert job.status == "succeeded", job.error
    events = [json.dumps(e.payload) for e in store.events(job_id)]
    assert any("held-out preference accuracy" in m for m in events)
    card, _ = pairs_hub.snapshot("alice/tiny-dpo")
    meta = yaml.safe_load((card / "README.md").read_text().split("---")[1])
    assert meta["base_model"] == "org/tiny-base" and meta["base_model_relation"] == "finetune" and "dpo" in meta["tags"]


def test_an_adapter_published_alone_is_carded_as_an_adapter(pairs_hub, home, capsys, tmp_path):
    from factory.cli.main import main

    req = tmp_path / "adapter.yaml"
    req.write_text(yaml.safe_dump(_stranger_dpo(publish={"adapter": True}, hub_model_id="me/dpo-adapter")))
    assert main(["run", str(req)]) == 0, capsys.readouterr().err
    folder, _ = pairs_hub.snapshot("me/dpo-adapter")
    meta = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
    assert meta["base_model_relation"] == "adapter" and meta["library_name"] == "peft"
    assert (folder / "adapter_config.json").is_file()


def test_prepare_and_the_cost_estimate_count_both_sequences(home, tiny_base, tmp_path, capsys):
    from factory.admission.remote_policy import estimated_tokens
    from factory.cli.main import main

    data = _pairs_file(tmp_path)
    req = tmp_path / "req.yaml"
    req.write_text(yaml.safe_dump({"base_model": str(tiny_base), "rl": "dpo", "micro_batch_size": 4,
                                   "datasets": [{"path": data.name, "type": "preference"}], "sequence_len": 128}))
    assert main(["prepare", str(req)]) == 0
    out = capsys.readouterr().out
    assert "pairs              36 train, 4 held-out pairs" in out and "steps per epoch    9" in out
    dpo = parse_request({"base_model": "o/m", "rl": "dpo", "datasets": [{"path": "o/d", "type": "preference"}],
                         "max_steps": 10, "micro_batch_size": 4, "sequence_len": 512})
    sft = parse_request({"base_model": "o/m", "datasets": [{"path": "o/d"}], "max_steps": 10, "micro_batch_size": 4,
                         "sequence_len": 512})
    assert estimated_tokens(dpo) == 2 * estimated_tokens(sft) == 2 * 10 * 4 * 512


def test_the_mask_preview_shows_prompt_chosen_and_rejected(pairs_hub):
    from factory.frontdoor.mask_preview import as_html, preview
    from factory.request.config import loads_request

    request = loads_request(yaml.safe_dump(_stranger_dpo()))
    rows = preview(request, pairs_hub, rows=2, bounded=True)
    assert [label for label, _ in rows] == ["row 1: prompt + chosen", "row 1: prompt + rejected",
                                            "row 2: prompt + chosen", "row 2: prompt + rejected"]
    (prompt, masked), (answer, trained) = rows[1][1]
    assert "What is 0 plus one?" in prompt and not masked and answer.startswith("7 or so") and trained
    page = as_html(rows)
    assert page.count('class="trained"') == 4 and "row 2: prompt + rejected" in page


def test_a_resumed_dpo_run_ends_where_an_uninterrupted_one_does(home, tiny_base, tmp_path, capsys):
    """The run resumes from its last checkpoint (the reference log-probs computed again, the same values) and ends
    with the adapter an uninterrupted run trained."""
    import shutil

    from safetensors.torch import load_file

    from factory.cli.main import main

    data = _pairs_file(tmp_path)
    req = tmp_path / "req.yaml"
    run = tmp_path / "run"
    req.write_text(yaml.safe_dump({
        "base_model": str(tiny_base), "rl": "dpo", "datasets": [{"path": data.name, "type": "preference"}],
        "adapter": "lora", "lora_target_linear": True, "micro_batch_size": 2, "max_steps": 4, "save_steps": 2,
        "learning_rate": 1e-3, "sequence_len": 128, "output_dir": str(run), "publish": {"enabled": False}}))
    assert main(["run", str(req)]) == 0
    whole = load_file(run / "adapter" / "adapter_model.safetensors")
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")  # as if the run had died after its step-2 checkpoint
    shutil.rmtree(run / "adapter")
    for stage in ("train", "merge", "eval", "card", "publish"):
        (run / "stages" / f"{stage}.json").unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["run", str(req)]) == 0
    seen = capsys.readouterr()
    assert "resuming from checkpoint-2" in seen.out + seen.err
    resumed = load_file(run / "adapter" / "adapter_model.safetensors")
    assert whole.keys() == resumed.keys()
    assert max((whole[k] - resumed[k]).abs().max().item() for k in whole) < 1e-6


def test_the_job_views_show_the_held_out_pairs_first():
    from types import SimpleNamespace

    from factory.frontdoor.job_views import eval_rows

    table = {"pairs": 50, "method": "dpo", "models": {
        "base": {"accuracy": 0.5, "accuracy_se": 0.07, "margin": 0.0, "margin_se": 0.1},
        "finetuned": {"accuracy": 0.7, "accuracy_se": 0.065, "margin": 0.4, "margin_se": 0.1}}}
    job = SimpleNamespace(result={"preference": table, "scores": {"arc_easy": {
        "base": {"metric": "acc", "n": 10, "value": 0.5}, "finetuned": {"metric": "acc", "n": 10, "value": 0.6}}}})
    rows = eval_rows(job)
    assert rows[0] == ["held-out pairs (dpo)", "prefers chosen", 50, "0.500 ± 0.070", "0.700 ± 0.065", "+0.200"]
    assert rows[1][1] == "reward margin" and rows[2][0] == "arc_easy"


def test_the_contamination_check_covers_held_out_pairs_too(home, tiny_base, tmp_path, capsys):
    """Every pair is checked before the split, so a benchmark item in a pair is found wherever the pair lands,
    and under policy: drop it is neither trained on nor judged on."""
    from factory.cli.main import main

    items = [{"question": f"Which instrument did the orchestra player number {i} bring to the rainy concert hall today?"}
             for i in range(3)]
    (tmp_path / "quiz.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    rows = [{"prompt": f"What is {i} plus one?", "chosen": f"{i + 1}", "rejected": f"{i + 7}"} for i in range(30)]
    rows += [{"prompt": "Trivia", "chosen": f"A violin. {x['question']}", "rejected": "No idea."} for x in items]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    req = tmp_path / "req.yaml"
    req.write_text(yaml.safe_dump({
        "base_model": str(tiny_base), "rl": "dpo", "datasets": [{"path": "pairs.jsonl", "type": "preference"}],
        "sequence_len": 128, "val_set_size": 0.5, "contamination": {"benchmarks": ["quiz=quiz.jsonl"], "policy": "drop"}}))
    assert main(["prepare", str(req)]) == 0
    run = next((home / "runs").iterdir())
    report = json.loads((run / "data" / "report.json").read_text())
    assert report["contamination"]["rows_flagged"] == 3 and report["contamination"]["rows_dropped"] == 3
    pairs = json.loads((run / "data" / "pairs.json").read_text())
    assert len(pairs["train"]) + len(pairs["held_out"]) == 30  # the three are in neither


def test_preference_training_follows_the_requests_schedule_and_loraplus(home, tiny_base, tmp_path, capsys):
    """The preference trainer gets the same schedule and optimizer options as SFT: rex's rates step by step."""
    from factory.cli.main import main
    from factory.train.schedules import rex

    data = _pairs_file(tmp_path)
    req = tmp_path / "req.yaml"
    req.write_text(yaml.safe_dump({
        "base_model": str(tiny_base), "rl": "dpo", "datasets": [{"path": data.name, "type": "preference"}],
        "micro_batch_size": 2, "max_steps": 6, "learning_rate": 1e-3, "sequence_len": 128, "logging_steps": 1,
        "warmup_steps": 2, "lr_scheduler": "rex", "cosine_min_lr_ratio": 0.1, "adapter": "lora",
        "lora_target_linear": True, "loraplus_lr_ratio": 4, "publish": {"enabled": False}}))
    assert main(["run", str(req)]) == 0, capsys.readouterr().err
    run = next((home / "runs").iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["learning_rate"] for r in sorted(rows, key=lambda r: r["step"]) if "learning_rate" in r]
    assert lrs == [pytest.approx(1e-3 * rex(s, 2, 6, 0.1), abs=1e-12) for s in range(6)], lrs
