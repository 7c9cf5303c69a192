"""Per-user Hub tokens (sealed, bound to one job, gone when it ends) and delivery cursors that survive restarts."""

from __future__ import annotations

import threading

import pytest
import yaml

from conftest import CANARY, fake_token  # tests/ is on sys.path under pytest
from factory.queue.jobs import Limits, Store

USER_CANARY = fake_token("aliceSignInCanaryNeverInClear")


def _dump_database(store: Store) -> bytes:
    """Every row of every table, plus the raw database files for SQLite."""
    from sqlalchemy import inspect, text

    out = []
    with store.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            out += [repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{table}"'))]
    raw = b""
    if store.url.startswith("sqlite:///"):
        from pathlib import Path

        db = Path(store.url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file())
    return "\n".join(out).encode() + raw


def _scan(root, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.fixture
def alice_request():
    return yaml.safe_dump({"base_model": "org/tiny-base", "datasets": [{"path": "org/songs", "type": "alpaca"}],
                           "sequence_len": 64, "max_steps": 2, "adapter": "lora", "lora_target_linear": True,
                           "chat_template": "chatml", "hub_model_id": "alice/tuned", "val_set_size": 0})


def test_a_sign_in_token_publishes_for_its_user_and_is_never_kept_in_clear(hub, db_url, home, tmp_path, monkeypatch,
                                                                           capfd, alice_request):
    from factory.queue.worker import Worker

    hub.state.tokens[USER_CANARY] = "alice"
    monkeypatch.setenv("FACTORY_SECRET_KEY", "a passphrase only the operator knows, 42")
    store = Store(db_url, Limits(0, 0))
    job = store.submit(alice_request, "hf:alice", "space", hub_token=USER_CANARY)
    at_rest = _dump_database(store)
    assert USER_CANARY.encode() not in at_rest and b"gAAAA" in at_rest  # a Fernet token is there, sealed
    assert store.job_token(job).value == USER_CANARY  # sealed, and the worker can open it

    Worker(store, "w").run(drain=True)
    done = store.get(job)
    assert done.status == "succeeded", done.error
    repo = hub.state.repos[("model", "alice/tuned")]  # the operator's token ("me") may not write there
    assert repo.head() and "alice" in hub.state.users
    assert store.job_token(job) is None  # the secret row is gone with the job
    out = capfd.readouterr()
    for haystack, where in ((_dump_database(store), "database"), ((out.out + out.err).encode(), "output")):
        assert USER_CANARY.encode() not in haystack and CANARY.encode() not in haystack, where
    assert _scan(tmp_path, USER_CANARY) == [] and _scan(tmp_path, CANARY) == []
    assert all(USER_CANARY not in repr(e.payload) for e in store.events(job))


def test_without_a_secret_key_the_token_is_not_kept(hub, db_url, home, monkeypatch, alice_request):
    monkeypatch.delenv("FACTORY_SECRET_KEY", raising=False)
    store = Store(db_url, Limits(0, 0))
    job = store.submit(alice_request, "hf:alice", "space", hub_token=USER_CANARY)
    assert store.job_token(job) is None
    notes = [e.payload.get("message", "") for e in store.events(job)]
    assert any("FACTORY_SECRET_KEY is not set" in n and "operator's token" in n for n in notes)
    assert USER_CANARY.encode() not in _dump_database(store)


def test_the_token_is_deleted_whatever_the_outcome(hub, db_url, home, monkeypatch, alice_request):
    monkeypatch.setenv("FACTORY_SECRET_KEY", "another operator passphrase, long enough")
    store = Store(db_url, Limits(0, 0))
    cancelled = store.submit(alice_request, "hf:alice", "space", hub_token=USER_CANARY)
    store.cancel(cancelled, "hf:alice")
    failed = store.submit(alice_request, "hf:alice", "space", hub_token=USER_CANARY)
    store.claim("w", 30)
    store.claim("w", 30)
    store.finish(failed, "w", "failed", error="boom")
    assert store.job_token(cancelled) is None and store.job_token(failed) is None
    monkeypatch.setenv("FACTORY_SECRET_KEY", "a different key: the sealed token cannot be opened")
    third = store.submit(alice_request, "hf:alice", "space", hub_token=USER_CANARY)
    monkeypatch.setenv("FACTORY_SECRET_KEY", "yet another key that the worker has by mistake")
    from factory.base.errors import UserError

    with pytest.raises(UserError, match="cannot be opened"):
        store.job_token(third)


# ---- delivery cursors ----------------------------------------------------------------------------

def _job_with_events(store: Store, n: int) -> int:
    import yaml as _yaml

    from test_security import _insert_job

    job = _insert_job(store, _yaml.safe_dump({"base_model": "x"}))
    store.claim("worker", 300)
    for i in range(n):
        store.record(job, "worker", "message", {"message": f"milestone {i}"})
    return job


class Crash(Exception):
    pass


def test_a_deliverer_killed_midway_is_resumed_by_another_without_repeats(db_url):
    from factory.frontdoor.delivery import Deliverer

    from test_jobs import Clock

    clock = Clock()
    store = Store(db_url, Limits(0, 0), clock=clock)
    job = _job_with_events(store, 10)
    everything = [e.id for e in store.events(job)]
    posted: list[int] = []

    def dies_on_the_sixth(event):
        if len(posted) == 5:
            raise Crash("the bot process is killed")
        posted.append(event.id)

    with pytest.raises(Crash):
        Deliverer(store, "discord", "thread-1", dies_on_the_sixth, owner="bot-1", lease_s=30).pump(job)
    restarted = Deliverer(store, "discord", "thread-1", lambda e: posted.append(e.id), owner="bot-2", lease_s=30)
    assert restarted.pump(job) == 0  # the dead bot's lease still holds the thread
    clock.advance(31)
    assert restarted.pump(job) == len(everything) - 5
    assert posted == everything  # every event once, in order
    store.record(job, "worker", "message", {"message": "a late milestone"})
    assert restarted.pump(job) == 1 and len(posted) == len(everything) + 1
    assert store.delivered_upto("discord", job, "thread-1") == posted[-1]


def test_two_deliverers_on_one_target_never_send_the_same_event(db_url):
    from factory.frontdoor.delivery import Deliverer

    store = Store(db_url, Limits(0, 0))
    job = _job_with_events(store, 30)
    posted: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def run(name):
        def send(event):
            with lock:
                posted.append((name, event.id))

        start.wait()
        for _ in range(5):
            Deliverer(store, "discord", "thread-9", send, owner=name).pump(job)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for _, i in posted]
    assert sorted(ids) == [e.id for e in store.events(job)] and len(ids) == len(set(ids))
    other = Deliverer(store, "space", "webhook", lambda e: None, owner="c")
    assert other.pump(job) == len(ids)  # another target has its own cursor
