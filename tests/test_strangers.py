"""Strangers, second round: each finding of the front doors' second attack, through the real entry points
(Store.submit as the Space and the bot call it, the bot's handlers, the worker, `factory` itself), refused
clearly or bounded; and the allow-list that decides what a stranger's request may set at all.

The Space's own handlers are driven through gradio_client in test_space.py; the Discord role checks are in
test_bot.py.
"""

from __future__ import annotations

import json
import threading
import tracemalloc
from pathlib import Path

import pytest
import yaml

from conftest import CANARY, fake_token
from factory.base.errors import UserError
from factory.queue.jobs import Limits, Store
from test_front_door import _dump, good, local_hub  # noqa: F401 - a fixture
from test_jobs import wait_for


@pytest.fixture
def store(home) -> Store:
    return Store(f"sqlite:///{home / 'jobs.db'}", Limits(0, 0))


def run_worker(store: Store) -> None:
    from factory.queue.worker import Worker

    Worker(store, "w").run(drain=True)


# ---- the allow-list --------------------------------------------------------------------------------

def test_every_schema_key_is_on_exactly_one_list():
    from factory.admission.allow_list import OPERATOR, STRANGER, schema_keys

    keys = set(schema_keys())
    assert not set(STRANGER) & set(OPERATOR)
    assert not keys - set(STRANGER) - set(OPERATOR), ("place each new request key on the allow-list "
                                                     "(factory/admission/allow_list.py) or among the operator's")
    assert not (set(STRANGER) | set(OPERATOR)) - keys, "the lists name keys the schema no longer has"
    assert len(keys) > 100 and len(OPERATOR) >= 30


def test_a_key_on_neither_list_is_refused_by_name(local_hub, store, monkeypatch):
    from factory.admission.allow_list import STRANGER

    monkeypatch.delitem(STRANGER, "lora_dropout")  # as a key added to the schema and placed nowhere would be
    with pytest.raises(UserError, match="operator-only: `lora_dropout` is not on the front doors' allow-list"):
        store.submit(_dump(good(lora_dropout=0.1)), "hf:alice", "space")
    store.submit(_dump(good(lora_dropout=0.0)), "hf:alice", "space")  # its default asks for nothing: accepted


# ---- 1. pass-through dicts reach no loader ------------------------------------------------------------

PASS_THROUGH = [
    ("base_config_overrides", {"subfolder": "../../../../../../runs/job-3/merged"}, "base_config_overrides"),
    ("model_config", {"gguf_file": "/etc/passwd"}, "model_config"),
    ("model_config", {"device_map": "disk", "offload_folder": "/tmp/out"}, "model_config"),
    ("model_config", {"num_hidden_layers": 100000}, "model_config"),
    ("bnb_config_kwargs", {"llm_int8_skip_modules": ["lm_head"]}, "bnb_config_kwargs"),
    ("gradient_checkpointing_kwargs", {"use_reentrant": False}, "gradient_checkpointing_kwargs"),
]


@pytest.mark.parametrize("key,value,named", PASS_THROUGH, ids=[f"{k}-{next(iter(v))}" for k, v, _ in PASS_THROUGH])
def test_pass_through_dicts_are_the_operators(key, value, named, local_hub, store):
    for submitter, door in (("hf:alice", "space"), ("discord:123456789", "discord")):
        with pytest.raises(UserError, match=f"operator-only: `{named}"):
            store.submit(_dump(good(**{key: value})), submitter, door)
    assert store.list() == []


def test_bot_estimate_only_refuses_them_too(local_hub, store, monkeypatch):
    from test_bot import Attachment, interaction, private_replies, run

    from bot.discord_bot import FactoryBot

    monkeypatch.setenv("FACTORY_DISCORD_NAMESPACE", "factory-discord")
    monkeypatch.setenv("FACTORY_DISCORD_GUILDS", "42")
    bot = FactoryBot(store)
    inter = interaction(guild_id=42)
    text = _dump(good(hub_model_id="factory-discord/x", model_config={"subfolder": "../../runs/job-3/merged"}))
    run(bot.finetune(inter, Attachment(text), None, None, "alpaca", "lora", 1.0, 2e-4, None, estimate_only=True))
    replies = "\n".join(private_replies(inter))
    assert "operator-only: `model_config`" in replies and "The request is valid" not in replies


def test_the_operators_overrides_change_config_settings_only(tiny_base):
    from factory.request.config import parse_request
    from factory.train.train import overridden_config

    base = {"base_model": str(tiny_base), "datasets": [{"path": "org/songs"}]}
    with pytest.raises(UserError, match="subfolder: an argument of the model loader"):
        parse_request({**base, "model_config": {"subfolder": "x"}})
    with pytest.raises(UserError, match="`no_such_setting` is not a setting of this model's config"):
        overridden_config(parse_request({**base, "base_config_overrides": {"no_such_setting": 1}}), tiny_base)
    config = overridden_config(parse_request({**base, "base_config_overrides": {"rms_norm_eps": 0.001}}), tiny_base)
    assert config.rms_norm_eps == 0.001


# ---- 2. a chat model is a repo id, never a folder ---------------------------------------------------

def test_front_door_chat_never_loads_a_folder(local_hub, home, tiny_base, tmp_path):
    from factory.frontdoor.chat_engine import ChatEngine, Settings
    from factory.hub.choose import hub_for

    private = tmp_path / "private"
    private.mkdir()
    for p in tiny_base.iterdir():
        (private / p.name).write_bytes(p.read_bytes())
    local_hub.publish("org/private-model", private, "operator's own", private=True)
    run_folder = home / "runs" / "job-3-0123456789abcdef" / "merged"  # another user's unpublished model
    run_folder.mkdir(parents=True)
    for p in tiny_base.iterdir():
        (run_folder / p.name).write_bytes(p.read_bytes())
    engine = ChatEngine(device="cpu", paths=False)
    alice = hub_for("hf:alice")
    for ref in (str(run_folder), str(run_folder.parent), "runs/job-3-0123456789abcdef", "../runs/x", str(tiny_base)):
        with pytest.raises(UserError):
            engine.load(ref, alice)
    with pytest.raises(UserError, match="not found, or you may not read it"):
        engine.load("org/private-model", alice)
    assert engine.loaded() == []
    reply = engine.generate("org/tiny-base", [{"role": "user", "content": "hi"}], Settings(temperature=0, max_new_tokens=4),
                            alice)
    assert isinstance(reply, str) and engine.loaded() == ["org/tiny-base"]


# ---- 3. every read on a stranger's behalf is theirs --------------------------------------------------

def test_strangers_read_the_hub_as_themselves(hub, home, store, tiny_base):
    from factory.admission.admission import reader_hub
    from factory.frontdoor.mask_preview import preview

    rows = "".join(json.dumps({"instruction": f"secret {i}", "output": f"answer {i}"}) + "\n" for i in range(30))
    hub.state.add_repo("dataset", "org/secret-songs", {"data/train.jsonl": rows.encode()}, private=True)
    asked = len(hub.state.users)
    with pytest.raises(UserError, match="model 'org/private-base' is not in"):
        store.submit(_dump(good(base_model="org/private-base", hub_model_id="alice/x")), "hf:alice", "space")
    with pytest.raises(UserError, match="dataset 'org/secret-songs' was not found, or you may not read it"):
        store.submit(_dump(good(datasets=[{"path": "org/secret-songs"}])), "hf:alice", "space")
    with pytest.raises(UserError):
        preview(store_request(good(datasets=[{"path": "org/secret-songs"}])), reader_hub("hf:alice"), bounded=True)
    assert store.list() == []
    assert set(hub.state.users[asked:]) == {None}  # not one of those reads carried the operator's token
    # the operator's own queue reads with the operator's token; a signed-in stranger with their own
    hub.state.tokens[fake_token("alice")] = "alice"
    store.submit(_dump(good(datasets=[{"path": "org/secret-songs"}], hub_model_id="me/x")), "cli:op", "cli")
    store.submit(_dump(good(datasets=[{"path": "org/secret-songs"}])), "hf:alice", "space",
                 hub_token=fake_token("alice"))
    assert "alice" in hub.state.users[asked:]


def store_request(data: dict):
    from factory.request.config import parse_request

    return parse_request(data)


def test_a_strangers_job_reads_as_the_stranger(hub, home, store):
    """A row past the door (an older factory wrote it, or the repo turned private since): the worker reads as
    the stranger too, so the operator's private base is not there for them."""
    from test_security import _insert_job

    asked = len(hub.state.users)
    job = _insert_job(store, _dump(good(base_model="org/private-base", hub_model_id="alice/x")), "hf:alice", "space")
    run_worker(store)
    failed = store.get(job)
    assert failed.status == "failed" and "org/private-base" in failed.error, failed.error
    assert CANARY not in failed.error and set(hub.state.users[asked:]) <= {None, "me"}
    reads = [u for path, u in zip(hub.state.requests[asked:], hub.state.users[asked:]) if "private-base" in path]
    assert reads and set(reads) == {None}  # every read of that repo was anonymous


def test_the_local_hub_keeps_private_repos_to_their_owner(home, tmp_path):
    from factory.hub.local import LocalHub

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    operator = LocalHub(home / "hub")
    operator.publish("org/ops-private", folder, "m", private=True)
    operator.publish("team/alices", folder, "m", private=True, identity="hf:alice")
    operator.publish("org/public", folder, "m")
    alice, bob = LocalHub(home / "hub", reader="hf:alice"), LocalHub(home / "hub", reader="hf:bob")
    assert operator.exists("org/ops-private") and not alice.exists("org/ops-private")
    assert alice.exists("team/alices") and not bob.exists("team/alices")
    assert bob.exists("org/public")
    with pytest.raises(UserError, match="not in this factory's hub") as refused:
        bob.snapshot("team/alices")
    assert str(home) not in str(refused.value)  # nor where the hub lives
    assert "factory demo" not in str(refused.value) and "HF_TOKEN" not in str(refused.value)  # nor the operator's commands
    with pytest.raises(UserError, match="run `factory demo`"):
        LocalHub(home / "hub").snapshot("team/nothing")  # the operator at a terminal gets them


# ---- 4. a template that behaves only on the door's sample -------------------------------------------

SLY = ("{% if messages|length > 1 and messages[1]['content'] == 'Hello?' %}"
       "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
       "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
       "{% else %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}")


def test_a_sly_template_passes_the_door_and_is_bounded_everywhere_after(local_hub, store, monkeypatch):
    from factory.data import render_bounds
    from factory.admission.admission import reader_hub
    from factory.frontdoor.mask_preview import preview

    monkeypatch.setattr(render_bounds, "LIMIT_S", 1.0)
    job = store.submit(_dump(good(chat_template=SLY)), "hf:alice", "space")  # the door's sample renders
    with pytest.raises(UserError, match="chat-template-sandbox: the chat template did not finish rendering one "
                                        "conversation within 1 s"):
        preview(store_request(good(chat_template=SLY)), reader_hub("hf:alice"), bounded=True)
    monkeypatch.setattr(render_bounds, "ROW_S", 0.001)
    run_worker(store)
    failed = store.get(job)
    assert failed.status == "failed" and "chat-template-sandbox" in failed.error and "took more than" in failed.error


def test_a_job_stuck_rendering_a_hostile_template_is_cancelled_within_seconds(local_hub, store, monkeypatch):
    from factory.queue.worker import Worker

    from factory.data import render_bounds

    monkeypatch.setenv("FACTORY_CANCEL_POLL_SECONDS", "0.5")
    monkeypatch.setattr(render_bounds, "ROW_S", 100.0)  # no deadline before the cancel: only the cancel can stop it
    job = store.submit(_dump(good(chat_template=SLY)), "hf:alice", "space")
    worker = Worker(store, "w")
    thread = threading.Thread(target=worker.run, kwargs={"once": True}, daemon=True)
    thread.start()
    wait_for(lambda: store.get(job).stage == "data", 120, "the data stage")
    store.cancel(job, "hf:alice")
    # the render itself would take hours (10**10 loop turns); the wait below is a bound, not a measurement
    wait_for(lambda: store.get(job).status == "cancelled", 60, "the cancel to reach the stuck render")
    thread.join(30)
    assert not thread.is_alive() and "nothing was published" in store.get(job).error


def test_the_bounded_renderer_renders_what_the_tokenizer_does_and_stops_what_runs_away(tiny_tokenizer, monkeypatch):
    from factory.data import render_bounds
    from factory.data.chat import BUILTIN_TEMPLATES
    from factory.data.render_bounds import BoundedRenderer, RenderError

    monkeypatch.setattr(render_bounds, "LIMIT_S", 1.0)
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]
    with BoundedRenderer(tiny_tokenizer, BUILTIN_TEMPLATES["chatml"]) as render:
        for gen in (True, False):
            assert render(chat, add_generation_prompt=gen) == tiny_tokenizer.apply_chat_template(
                chat, chat_template=BUILTIN_TEMPLATES["chatml"], tokenize=False, add_generation_prompt=gen)
    with BoundedRenderer(tiny_tokenizer, SLY) as render, pytest.raises(UserError, match="within 1 s"):
        render(chat)
    hog = "{% set ns = namespace(s='x' * 1000) %}{% for i in range(21) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
    with BoundedRenderer(tiny_tokenizer, hog, seconds=30) as render, pytest.raises(UserError, match="MB"):
        render(chat)
    with BoundedRenderer(tiny_tokenizer, "{{ raise_exception('no system turns') }}") as render:
        with pytest.raises(RenderError, match="no system turns"):
            render(chat)
        with pytest.raises(RenderError):  # the child survives a refusal and serves the next render
            render(chat)


def test_the_renderers_child_dies_on_sigterm_whatever_handler_its_parent_has(tiny_tokenizer):
    """At exit, multiprocessing terminates daemon children with SIGTERM and then joins them. A child that kept the
    parent's SIGTERM handler (a worker's graceful stop) survived it, and the parent waited forever at exit
    (pytest printed its summary and never ended: CI timed out)."""
    import signal

    from factory.data.chat import BUILTIN_TEMPLATES
    from factory.data.render_bounds import BoundedRenderer

    before = signal.signal(signal.SIGTERM, lambda *_: None)  # as a Worker leaves it while it runs
    render = BoundedRenderer(tiny_tokenizer, BUILTIN_TEMPLATES["chatml"])
    try:
        render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
        render._proc.terminate()
        render._proc.join(120)
        assert render._proc.exitcode == -signal.SIGTERM
    finally:
        render.close()  # SIGKILL if it is still there
        signal.signal(signal.SIGTERM, before)


def test_a_worker_gives_back_the_signal_handlers_it_took(home):
    import signal

    from factory.queue.jobs import Store
    from factory.queue.worker import Worker

    mine = lambda *_: None  # noqa: E731
    before = signal.signal(signal.SIGTERM, mine)
    try:
        Worker(Store(), "w").run(drain=True)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_the_renderers_child_holds_none_of_its_parents_pipes(tiny_tokenizer):
    """The chat engine keeps a renderer's child for the life of the Space: a pipe the parent opened before it
    (a browser driver's stdin, the page's socket) must close when the parent closes it, not when the child ends.
    (This hung the test suite: Playwright's driver never saw its stdin close.)"""
    import os

    from factory.data.chat import BUILTIN_TEMPLATES
    from factory.data.render_bounds import BoundedRenderer

    read_end, write_end = os.pipe()
    try:
        with BoundedRenderer(tiny_tokenizer, BUILTIN_TEMPLATES["chatml"]) as render:
            render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
            held = {os.readlink(f"/proc/{render._proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{render._proc.pid}/fd")}
            ours = {os.readlink(f"/proc/self/fd/{fd}") for fd in (read_end, write_end)}
            assert ours and not ours & held, held
            os.close(write_end)
            write_end = None
            assert os.read(read_end, 1) == b""  # EOF at once: no other process holds the write end
    finally:
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)


# ---- 5. regexes from a request ------------------------------------------------------------------------

def test_request_patterns_are_matched_within_a_budget():
    from factory.base.patterns import matching

    names = [f"model.layers.{i}.self_attn.q_proj.weight" for i in range(64)]
    assert matching([r"layers\.(0|1)\."], names, full=False, what="x") == names[:2]
    # the pattern that hung a worker under Python's re: the regex package's own safeguards make it linear
    assert matching([r"^([a-z_.0-9]+)*X"], names, full=False, what="unfrozen_parameters") == []
    with pytest.raises(UserError, match="took more than 0.5 s"):  # one they do not catch: the budget stops it
        matching([r"^(.|..)+(?<!t)$"], names, full=False, what="unfrozen_parameters", budget_s=0.5)
    with pytest.raises(UserError, match="not a regular expression"):
        matching(["(unclosed"], names, full=True, what="lora_target_modules")


def test_a_backtracking_pattern_no_longer_hangs_a_run(tiny_base, tmp_path, home, monkeypatch, capsys):
    from factory.base import patterns
    from factory.cli.main import main

    monkeypatch.setattr(patterns, "BUDGET_S", 1.0)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"a text about rain number {i}"}) + "\n" for i in range(20)))
    req = tmp_path / "r.yaml"
    hostile = r"^(.|..)+(?<!t)$"  # backtracks on every name ending in t (under the regex package's safeguards too)
    req.write_text(yaml.safe_dump({"base_model": str(tiny_base), "datasets": [{"path": str(data), "type": "completion"}],
                                   "sequence_len": 64, "max_steps": 1, "unfrozen_parameters": [hostile],
                                   "hub_model_id": "me/frozen"}))
    assert main(["run", str(req)]) == 2
    assert "unfrozen_parameters: matching 1 pattern(s)" in capsys.readouterr().err


@pytest.mark.parametrize("over,word", [
    ({"unfrozen_parameters": ["^([a-z_.0-9]+)*X"]}, "operator-only: `unfrozen_parameters`"),
    ({"lora_target_modules": "^([a-z_.0-9]+)*X"}, "operator-only: `lora_target_modules` as one string"),
    ({"lora_target_modules": ["q_proj", "v_proj(x)*"]}, "plain module names"),
], ids=["unfrozen", "target-regex", "target-names"])
def test_front_doors_take_no_patterns(over, word, local_hub, store):
    req = good(**over)
    req.pop("lora_target_linear")
    with pytest.raises(UserError, match=word.replace("(", r"\(").replace(")", r"\)")):
        store.submit(_dump(req), "hf:alice", "space")


# ---- 7. a shared namespace: ownership is recorded ----------------------------------------------------

def test_a_repo_published_through_a_front_door_is_its_publishers(home, tmp_path):
    from factory.hub.local import LocalHub
    from factory.hub.protocol import owner_of

    hub = LocalHub(home / "hub")
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    for i, folder in enumerate((v1, v2)):
        folder.mkdir()
        (folder / "model.safetensors").write_text(f"weights {i}")
    hub.publish("team/shared-model", v1, "alice's", identity="hf:alice")
    with pytest.raises(UserError, match="published through the factory by hf:alice; a new revision from hf:bob "
                                        "needs their grant"):
        hub.publish("team/shared-model", v2, "bob's", identity="hf:bob")
    hub.publish("team/shared-model", v1, "alice grants bob", identity="hf:alice", writers=["hf:bob"])
    hub.publish("team/shared-model", v2, "bob's, granted", identity="hf:bob", writers=["hf:mallory"])
    folder, _ = hub.snapshot("team/shared-model")
    assert (folder / "model.safetensors").read_text() == "weights 1"
    assert owner_of((folder / "factory_manifest.json").read_bytes()) == ("hf:alice", ["hf:bob"])  # only alice grants
    with pytest.raises(UserError, match="needs their grant"):
        hub.publish("team/shared-model", v1, "mallory's", identity="hf:mallory")
    hub.publish("alice/own", v1, "operator's", identity=None)
    hub.publish("alice/own", v2, "a user's own namespace is theirs", identity="hf:alice")


def test_a_stranger_cannot_publish_over_anothers_repo_in_a_shared_namespace(local_hub, store, home, monkeypatch):
    monkeypatch.setenv("FACTORY_ALLOWED_NAMESPACES", "team")
    first = store.submit(_dump(good(hub_model_id="team/shared-model")), "hf:alice", "space")
    run_worker(store)
    assert store.get(first).status == "succeeded", store.get(first).error
    revision = local_hub.current("team/shared-model")
    second = store.submit(_dump(good(hub_model_id="team/shared-model", seed=7)), "hf:bob", "space")
    run_worker(store)
    job = store.get(second)
    assert job.status == "failed" and "needs their grant" in job.error, job.error
    assert local_hub.current("team/shared-model") == revision  # nothing was published over alice's model


# ---- 8. unbounded work ------------------------------------------------------------------------------

@pytest.mark.parametrize("over,word", [
    ({"micro_batch_size": 10**9}, "limit max_micro_batch_size"),
    ({"micro_batch_size": 64, "gradient_accumulation_steps": 10**6}, "limit max_batch_tokens"),
    ({"evals": {"tasks": ["factory_demo_heldout"], "limit": 10, "max_new_tokens": 10**9}}, "limit max_new_tokens"),
    ({"save_steps": 1, "save_total_limit": 500}, "limit save_total_limit"),
    ({"save_steps": 1, "max_steps": 4000}, "limit max_checkpoints"),
    ({"val_set_size": 0.1, "eval_steps": 1, "max_steps": 4000}, "limit max_evaluations"),
    ({"val_set_size": 0.1, "eval_steps": 100, "max_steps": 4000,  # 40 evaluations x 500 held-out items
      "evals": {"tasks": ["factory_demo_heldout"], "limit": 500}}, "limit max_training_eval_items"),
    ({"tokens": [f"<t{i}>" for i in range(1000)]}, "limit max_added_tokens"),
    ({"seed": 10**30}, "seed"),
], ids=["micro-batch", "batch-tokens", "max-new-tokens", "keep-every-checkpoint", "checkpoint-every-step",
        "evaluate-every-step", "score-at-every-evaluation", "thousand-tokens", "huge-seed"])
def test_unbounded_work_is_refused(over, word, local_hub, store):
    with pytest.raises(UserError, match=word):
        store.submit(_dump(good(**over)), "hf:alice", "space")
    assert store.list() == []


# ---- 9. crashes and leaks ----------------------------------------------------------------------------

def test_a_billion_laughs_in_the_cli_is_refused_cheaply(tmp_path, capsys):
    from factory.cli.main import main

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8))
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb + "base_model: *i\ndatasets: *i\nsequence_len: *i\ntokens: *i\nlora_modules_to_save: *i\n")
    tracemalloc.start()
    assert main(["validate", str(path)]) == 2
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    err = capsys.readouterr().err
    assert "invalid request" in err and "more" in err and len(err) < 20_000, err[:2000]
    assert peak < 100_000_000  # its expansion would be 9**9 items of every alias


def test_a_strangers_failure_shows_the_message_not_the_worker(local_hub, store, home, monkeypatch):
    from factory.run import pipeline

    def crash(*_args):
        raise RuntimeError(f"cannot map {home}/runs/secret-layout/model.bin")

    job = store.submit(_dump(good()), "hf:alice", "space")
    monkeypatch.setattr(pipeline, "stage_merge", crash)
    run_worker(store)
    failed = store.get(job)
    assert failed.status == "failed" and "cannot map …/model.bin" in failed.error
    assert "Traceback" not in failed.error and str(home) not in failed.error and "File \"" not in failed.error
    for event in store.events(job):
        assert str(home) not in json.dumps(event.payload), event.payload
    op = store.submit(_dump(good(hub_model_id="me/x")), "cli:op", "cli")  # the operator's own job keeps it all
    run_worker(store)
    assert "--- last lines ---" in store.get(op).error


# ---- 10. a run folder belongs to one job for ever ------------------------------------------------------

def test_a_new_job_database_never_reports_an_old_jobs_model(local_hub, home, tmp_path):
    from factory.hub.local import LocalHub

    old = Store(f"sqlite:///{tmp_path / 'old.db'}", Limits(0, 0))
    first = old.submit(_dump(good(hub_model_id="alice/first")), "hf:alice", "space")
    run_worker(old)
    assert old.get(first).status == "succeeded"
    new = Store(f"sqlite:///{tmp_path / 'new.db'}", Limits(0, 0))
    again = new.submit(_dump(good(hub_model_id="alice/second", seed=3)), "hf:alice", "space")
    assert again == first == 1  # the same job number in another database
    run_worker(new)
    job = new.get(again)
    assert job.status == "succeeded" and job.run_name != old.get(first).run_name
    assert job.result["published"]["repo_id"] == "alice/second"
    assert LocalHub(home / "hub").exists("alice/second")
    assert Path(job.result["run_dir"]).name == job.run_name


def test_a_run_folder_of_another_request_is_refused_and_stale_stamps_ignored(tiny_base, tmp_path, home):
    from factory.request.config import parse_request
    from factory.hub.local import LocalHub
    from factory.run.pipeline import Run, execute
    from factory.base.progress import Silent

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"text number {i} about rain"}) + "\n" for i in range(20)))
    folder = tmp_path / "run"
    base = {"base_model": str(tiny_base), "datasets": [{"path": str(data), "type": "completion"}], "sequence_len": 64,
            "max_steps": 1, "output_dir": str(folder)}
    first = parse_request(base)
    execute(Run(request=first, hub=LocalHub(home / "hub"), reporter=Silent(), dir=folder), stop_after="data")
    second = parse_request({**base, "seed": 9})
    with pytest.raises(UserError, match="holds the run of another request"):
        execute(Run(request=second, hub=LocalHub(home / "hub"), reporter=Silent(), dir=folder), stop_after="data")
    run = Run(request=second, hub=LocalHub(home / "hub"), reporter=Silent(), dir=folder)
    assert run.stamp("data") is None  # the first request's stamp is not this request's
    assert Run(request=first, hub=LocalHub(home / "hub"), reporter=Silent(), dir=folder).stamp("data") is not None
