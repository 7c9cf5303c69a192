"""Requests from strangers (the Space, Discord): every hostile request refused at the door, naming the rule,
with nothing queued; any generated request either validates or is a UserError; who is who."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory.base.errors import UserError
from factory.queue.jobs import Limits, Store


@pytest.fixture
def local_hub(home, tiny_base, tmp_path, monkeypatch):
    """The local hub with a base (org/tiny-base) and a dataset (org/songs), as a front door sees them."""
    from factory.hub.local import LocalHub

    monkeypatch.setenv("FACTORY_HUB", "local")
    hub = LocalHub(home / "hub")
    hub.publish("org/tiny-base", tiny_base, "base")
    songs = tmp_path / "songs"
    (songs / "data").mkdir(parents=True)
    (songs / "data" / "train.jsonl").write_text("".join(
        json.dumps({"instruction": f"Name song {i}", "output": f"Song {i} is about rain"}) + "\n" for i in range(40)))
    hub.publish("org/songs", songs, "data", "dataset")
    return hub


def good(**over) -> dict:
    return {"base_model": "org/tiny-base", "datasets": [{"path": "org/songs", "type": "alpaca"}],
            "sequence_len": 64, "max_steps": 4, "adapter": "lora", "lora_target_linear": True,
            "chat_template": "chatml", "hub_model_id": "alice/songs", **over}


def _dump(d: dict) -> str:
    return yaml.safe_dump(d, allow_unicode=True)


def _nested(depth: int) -> str:
    return _dump(good()) + "extra: " + "[" * depth + "]" * depth + "\n"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)) + _dump(good())

# (rule, request text, a word the refusal must contain)
HOSTILE = [
    ("hub-ids-only", "local model folder", lambda tb: _dump(good(base_model=str(tb))), "hub-ids-only"),
    ("hub-ids-only", "absolute path", lambda tb: _dump(good(base_model="/etc")), "not a repo id"),
    ("hub-ids-only", "home path", lambda tb: _dump(good(base_model="~/models/llama")), "not a repo id"),
    ("hub-ids-only", "file:// URL", lambda tb: _dump(good(base_model="file:///etc/passwd")), "not a repo id"),
    ("hub-ids-only", "URL-encoded traversal", lambda tb: _dump(good(base_model="..%2F..%2Fetc")), "'..'"),
    ("hub-ids-only", "full-width dots", lambda tb: _dump(good(base_model="org/\uff0e\uff0e")), "not a repo id"),
    ("hub-ids-only", "right-to-left mark", lambda tb: _dump(good(base_model="org/\u202ebase")), "not a repo id"),
    ("hub-ids-only", "look-alike letters", lambda tb: _dump(good(base_model="\u043erg/tiny-base")), "not a repo id"),
    ("hub-ids-only", "local dataset file", lambda tb: _dump(good(datasets=[{"path": "/tmp/x.jsonl"}])), "hub-ids-only"),
    ("hub-ids-only", "dataset in home", lambda tb: _dump(good(datasets=[{"path": "~/x.jsonl"}])), "hub-ids-only"),
    ("hub-ids-only", "dataset climbing", lambda tb: _dump(good(datasets=[{"path": "../x.jsonl"}])), "'..'"),
    ("operator-only", "trust_remote_code", lambda tb: _dump(good(trust_remote_code=True)), "operator-only"),
    ("operator-only", "output_dir", lambda tb: _dump(good(output_dir="/tmp/out")), "operator-only"),
    ("operator-only", "dataset_prepared_path", lambda tb: _dump(good(dataset_prepared_path="/tmp/p")), "operator-only"),
    ("operator-only", "lora_model_dir", lambda tb: _dump(good(lora_model_dir="/tmp/a")), "operator-only"),
    ("operator-only", "resume_from_checkpoint", lambda tb: _dump(good(resume_from_checkpoint="/r")), "operator-only"),
    ("operator-only", "deepspeed JSON", lambda tb: _dump(good(deepspeed="zero3.json")), "operator-only"),
    ("operator-only", "chat template file", lambda tb: _dump(good(chat_template_jinja="/t.jinja")), "operator-only"),
    ("operator-only", "embedding model folder",
     lambda tb: _dump(good(contamination={"embedding_model": "/models/e5"})), "operator-only"),
    ("operator-only", "benchmark NAME=PATH",
     lambda tb: _dump(good(contamination={"benchmarks": ["x=/etc/passwd.jsonl"]})), "operator-only"),
    ("operator-only", "dataset data_files",
     lambda tb: _dump(good(datasets=[{"path": "org/songs", "data_files": ["/etc/shadow"]}])), "operator-only"),
    ("own-namespace", "someone else's namespace", lambda tb: _dump(good(hub_model_id="bob/x")), "own-namespace"),
    ("limit adapters", "full finetune", lambda tb: _dump({k: v for k, v in good().items()
                                                          if k not in ("adapter", "lora_target_linear")}), "adapters"),
    ("limit max_sequence_len", "32k context", lambda tb: _dump(good(sequence_len=32768)), "max_sequence_len"),
    ("limit max_epochs", "50 epochs", lambda tb: _dump(good(num_epochs=50)), "max_epochs"),
    ("limit max_steps", "a million steps", lambda tb: _dump(good(max_steps=10**6)), "max_steps"),
    ("limit max_lora_r", "rank 1024", lambda tb: _dump(good(lora_r=1024)), "max_lora_r"),
    ("limit max_training_tokens", "huge batches",
     lambda tb: _dump(good(max_steps=5000, micro_batch_size=64, sequence_len=4096)), "max_training_tokens"),
    ("limit max_eval_items", "every eval item", lambda tb: _dump(good(evals={"tasks": ["arc_easy"]})), "max_eval_items"),
    ("yaml-alias", "billion laughs", lambda tb: BOMB, "yaml-alias"),
    ("yaml-depth", "50 levels deep", lambda tb: _nested(50), "yaml-depth"),
    ("yaml-size", "a 10 MB string", lambda tb: _dump(good(seed="x" * 10_000_000)), "yaml-size"),
    ("yaml-size", "a 70 KB request", lambda tb: _dump(good()) + "#" * 70_000 + "\n", "yaml-size"),
    ("yaml-nul", "a NUL byte", lambda tb: _dump(good()).replace("alice/songs", "alice/so\0ngs"), "yaml-nul"),
    ("yaml-tag", "a Python tag", lambda tb: _dump(good()) + "x: !!python/object/apply:os.system [id]\n", "yaml-tag"),
    ("yaml-tag", "a custom tag", lambda tb: _dump(good()) + "x: !mine 3\n", "yaml-tag"),
    ("chat-template-sandbox", "a template that never ends",
     lambda tb: _dump(good(chat_template="{% for i in range(100000) %}{% for j in range(100000) %}"
                                         "{% endfor %}{% endfor %}")), "chat-template-sandbox"),
    ("chat-template-sandbox", "a template that explodes",
     lambda tb: _dump(good(chat_template="{{ 'x' * 2000000000 }}{% for m in messages %}{{ m.content }}{% endfor %}")),
     "chat-template-sandbox"),
    ("chat-template-sandbox", "a template reaching for Python",
     lambda tb: _dump(good(chat_template="{{ ''.__class__.__mro__[1].__subclasses__() }}")), "chat-template-sandbox"),
    ("endpoint", "its own Hub endpoint", lambda tb: _dump(good(hub_endpoint="http://127.0.0.1:9")), "hub_endpoint"),
    ("revision", "a revision that climbs", lambda tb: _dump(good(revision_of_model="../../x")), "revision"),
    ("unknown key", "a typo", lambda tb: _dump(good(lerning_rate=1)), "did you mean"),
]


@pytest.mark.parametrize("rule,what,make,word", HOSTILE, ids=[h[1] for h in HOSTILE])
def test_hostile_requests_are_refused_at_the_door(rule, what, make, word, local_hub, tiny_base, db_url):
    store = Store(db_url, Limits(0, 0))
    with pytest.raises(UserError) as refused:
        store.submit(make(tiny_base), "hf:alice", "space")
    assert word in str(refused.value), str(refused.value)
    assert store.list() == []  # nothing written


def test_the_table_is_long_enough_and_a_good_request_passes(local_hub, db_url):
    assert len(HOSTILE) >= 30 and len({h[0] for h in HOSTILE}) >= 12
    store = Store(db_url, Limits(0, 0))
    job = store.get(store.submit(_dump(good()), "hf:alice", "space"))
    assert job.hub_model_id == "alice/songs" and job.submitter == "hf:alice"


def test_a_yaml_bomb_is_refused_cheaply():
    from factory.admission.yaml_guard import load_untrusted

    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="yaml-alias"):
        load_untrusted(BOMB)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"billion laughs refused in {seconds * 1000:.1f} ms, peak {peak / 1e6:.2f} MB allocated")
    assert peak < 5_000_000  # memory is deterministic; the time is printed, not asserted


def test_operator_bounds_come_from_a_file(local_hub, db_url, tmp_path, monkeypatch):
    limits = tmp_path / "limits.yaml"
    limits.write_text("base_models: ['meta-llama/*']\nmax_steps: 2\n")
    monkeypatch.setenv("FACTORY_REMOTE_LIMITS", str(limits))
    store = Store(db_url, Limits(0, 0))
    with pytest.raises(UserError, match="limit base_models: 'org/tiny-base'.*meta-llama/\\*"):
        store.submit(_dump(good()), "hf:alice", "space")
    limits.write_text("max_steps: 2\n")
    with pytest.raises(UserError, match="limit max_steps: max_steps is 4; this factory allows at most 2"):
        store.submit(_dump(good()), "hf:alice", "space")
    limits.write_text("max_stepz: 2\n")
    with pytest.raises(UserError, match="unknown keys"):
        store.submit(_dump(good()), "hf:alice", "space")


def test_who_is_who_and_where_their_models_go(local_hub, db_url, monkeypatch):
    store = Store(db_url, Limits(0, 0))
    for who, door in (("alice", "space"), ("hf:", "space"), ("discord:alice", "discord"), ("hf:alice", "discord")):
        with pytest.raises(UserError, match="submitter"):
            store.submit(_dump(good()), who, door)
    named = store.get(store.submit(_dump({k: v for k, v in good().items() if k != "hub_model_id"}), "hf:alice", "space"))
    assert named.hub_model_id == f"alice/tiny-base-songs-job{named.id}"
    with pytest.raises(UserError, match="discord-namespace"):
        store.submit(_dump(good()), "discord:123456789", "discord")
    monkeypatch.setenv("FACTORY_DISCORD_NAMESPACE", "factory-discord")
    anon = {k: v for k, v in good().items() if k != "hub_model_id"}
    first = store.get(store.submit(_dump(anon), "discord:123456789", "discord"))
    assert first.hub_model_id == f"factory-discord/tiny-base-songs-d123456789-job{first.id}"
    chosen = store.get(store.submit(_dump(good(hub_model_id="factory-discord/my-songs")), "discord:987654321", "discord"))
    assert chosen.hub_model_id == "factory-discord/my-songs-d987654321"  # two users' names cannot collide
    with pytest.raises(UserError, match="own-namespace: hub_model_id 'alice/x' is outside"):
        store.submit(_dump(good(hub_model_id="alice/x")), "discord:987654321", "discord")
    assert "hub_model_id: factory-discord/my-songs-d987654321" in chosen.request


def test_the_worker_applies_the_policy_again(local_hub, tiny_base, db_url):
    """A stranger's job row edited after submit (or written by an older factory) is refused by the worker."""
    from factory.queue.worker import Worker
    from test_security import _insert_job

    store = Store(db_url, Limits(0, 0))
    job = _insert_job(store, _dump(good(base_model=str(tiny_base))), "hf:alice", "space")
    Worker(store, "w").run(drain=True)
    assert store.get(job).status == "failed" and "hub-ids-only" in store.get(job).error


# ---- any request either validates or is a UserError ----------------------------------------------

KEYS = ["base_model", "datasets", "sequence_len", "adapter", "lora_r", "num_epochs", "max_steps", "learning_rate",
        "hub_model_id", "chat_template", "evals", "contamination", "output_dir", "trust_remote_code",
        "revision_of_model", "hub_endpoint", "micro_batch_size", "publish", "val_set_size", "lora_target_linear"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=40), st.sampled_from(["org/tiny-base", "org/songs", "alice/x", "../x", "/etc",
                                                           "chatml", "lora", "{{ x }}", "x=/etc/passwd.jsonl"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(KEYS + ["path", "type", "tasks",
                                                                                               "benchmarks", "limit"]),
                                                                       inner, max_size=4)), max_leaves=12)
requests = st.fixed_dictionaries({}, optional={k: values for k in KEYS}).map(lambda d: {**good(), **d})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=requests)
def test_any_request_validates_or_is_a_user_error(req, local_hub):
    from factory.admission.admission import admit

    try:
        text = yaml.safe_dump(req, allow_unicode=True)
    except yaml.YAMLError:
        return
    try:
        admit(text, "hf:alice", "space")
    except UserError:
        pass
