"""The job queue on SQLite and PostgreSQL: submissions, limits, claims, leases, cancel, SIGTERM, SIGKILL.

Workers are real `factory worker` processes running real (tiny) pipeline jobs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import missing  # tests/ is on sys.path under pytest

from factory.base.errors import UserError
from factory.queue.jobs import Limits, Store

STAGES = ["resolve", "data", "train", "merge", "eval", "export", "card", "publish"]


@pytest.fixture
def tiny_request(tiny_base, tmp_path):
    """A function giving the YAML of a tiny LoRA job on the tiny base; keyword arguments override keys."""
    import yaml

    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": f"document number {i} about music and rain"}) + "\n" for i in range(40)))

    def make(**over) -> str:
        req = {"base_model": str(tiny_base), "datasets": [{"path": str(data), "type": "completion"}],
               "sequence_len": 64, "micro_batch_size": 2, "max_steps": 4, "save_steps": 2, "learning_rate": 1e-3,
               "adapter": "lora", "lora_target_linear": True, "lora_dropout": 0.1, "val_set_size": 4,
               "excess_length_strategy": "truncate", "hub_model_id": "me/tiny-job", "logging_steps": 1}
        req.update(over)
        return yaml.safe_dump(req)

    return make


def worker_env(home: Path, url: str, **extra) -> dict:
    env = {**os.environ, "FACTORY_HOME": str(home), "FACTORY_DB_URL": url, "FACTORY_POLL_SECONDS": "0.2",
           "FACTORY_LEASE_SECONDS": "3"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_worker(home: Path, url: str, log: Path, *args, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "factory", "worker", *args], env=worker_env(home, url, **extra),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Clock:
    """A clock the test moves by hand: lease expiry without sleeping, whatever the machine's load."""

    def __init__(self):
        from factory.queue.jobs import now

        self.t = now()

    def __call__(self):
        return self.t

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.t += timedelta(seconds=seconds)


def paused(proc: subprocess.Popen) -> bool:
    """True once the process has stopped itself (FACTORY_PAUSE_AT_STEP) or exited."""
    try:
        return Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except FileNotFoundError:
        return True


def statuses(store: Store, job_id: int) -> list[str]:
    return [e.payload["status"] for e in store.events(job_id) if e.kind == "status"]


# ---- submit, limits, authorisation ---------------------------------------------------------------

def test_schema_is_versioned_and_created_once(db_url):
    first, second = Store(db_url), Store(db_url)
    assert first.schema_version() == second.schema_version() == 4


def test_a_version_2_database_gains_the_jobs_columns_and_keeps_its_rows(db_url, tiny_request):
    from sqlalchemy import text

    store = Store(db_url, Limits(0, 0))
    job_id = store.submit(tiny_request(), "alice", "cli")
    with store.engine.begin() as conn:  # back to what version 2 made
        for column in ("remote_job", "remote_seen", "run_token"):
            conn.execute(text(f"ALTER TABLE jobs DROP COLUMN {column}"))
        conn.execute(text("DELETE FROM factory_schema_version WHERE version >= 3"))
    store.engine.dispose()
    again = Store(db_url, Limits(0, 0))
    assert again.schema_version() == 4
    job = again.claim("w", 60)
    assert (job.id, job.remote_job, job.remote_seen) == (job_id, None, None)
    assert len(job.run_token) == 16 and job.run_name == f"job-{job_id}-{job.run_token}"  # made when first claimed
    assert again.set_remote(job_id, "w", remote_job="abc123") and again.set_remote(job_id, "w", seen=7)
    assert not again.set_remote(job_id, "someone-else", seen=9)  # only the owner
    assert (again.get(job_id).remote_job, again.get(job_id).remote_seen) == ("abc123", 7)


def test_invalid_requests_never_become_jobs(db_url, tiny_request):
    store = Store(db_url, Limits(0, 0))
    with pytest.raises(UserError, match="feild_output|unknown key"):
        store.submit(tiny_request() + "feild_output: x\n", "alice", "cli")
    with pytest.raises(UserError, match="not valid YAML"):
        store.submit("base_model: [unclosed", "alice", "cli")
    with pytest.raises(UserError, match="output_dir"):
        store.submit(tiny_request(output_dir="/tmp/x"), "alice", "cli")
    with pytest.raises(UserError, match="front_door"):
        store.submit(tiny_request(), "alice", "email")
    with pytest.raises(UserError, match="is not in the local hub"):
        store.submit(tiny_request(base_model="nobody/missing-model"), "alice", "cli")
    assert store.list() == []
    job_id = store.submit(tiny_request(), "alice", "cli")
    job = store.get(job_id)
    assert (job.status, job.submitter, job.front_door, job.attempt) == ("queued", "alice", "cli", 0)
    assert "lora_target_linear: true" in job.request


def test_per_submitter_limits_name_the_limit(db_url, tiny_request):
    store = Store(db_url, Limits(queued=2, per_day=3, operators=frozenset({"op"})))
    store.submit(tiny_request(), "bob", "cli")
    second = store.submit(tiny_request(), "bob", "cli")
    with pytest.raises(UserError, match="FACTORY_MAX_QUEUED_PER_SUBMITTER=2"):
        store.submit(tiny_request(), "bob", "cli")
    store.cancel(second, "bob")
    store.submit(tiny_request(), "bob", "cli")  # a queued slot freed; third of the day
    store.cancel(store.list(submitter="bob")[0].id, "bob")
    with pytest.raises(UserError, match=r"FACTORY_MAX_JOBS_PER_DAY=3\); the next one can be submitted after 20\d\d-"):
        store.submit(tiny_request(), "bob", "cli")
    for _ in range(4):
        store.submit(tiny_request(), "op", "cli")  # operators are exempt
    assert len(store.list(submitter="bob")) == 3


def test_cancel_authorisation_and_queued_cancel(db_url, tiny_request):
    store = Store(db_url, Limits(0, 0, operators=frozenset({"admin"})))
    a = store.submit(tiny_request(), "alice", "cli")
    b = store.submit(tiny_request(), "alice", "cli")
    with pytest.raises(UserError, match="only its submitter"):
        store.cancel(a, "mallory")
    assert store.cancel(a, "alice").status == "cancelled"
    assert store.cancel(b, "admin").status == "cancelled"
    with pytest.raises(UserError, match="already cancelled"):
        store.cancel(a, "alice")
    with pytest.raises(UserError, match="no job 999"):
        store.get(999)
    assert store.claim("w1", 30) is None  # cancelled jobs are never claimed
    assert statuses(store, a) == ["queued", "cancelled"]


def test_claims_are_exclusive_and_expired_leases_return(db_url, tiny_request):
    clock = Clock()
    store = Store(db_url, Limits(0, 0), clock=clock)
    first, second = store.submit(tiny_request(), "u", "cli"), store.submit(tiny_request(), "u", "cli")
    j1 = store.claim("w1", lease_s=5)
    j2 = store.claim("w2", lease_s=30)
    assert (j1.id, j2.id) == (first, second) and store.claim("w3", 30) is None
    assert not store.record(j1.id, "w2", "message", {"message": "not mine"})  # only the owner writes
    clock.advance(4.9)
    assert store.claim("w3", 30) is None  # still w1's
    clock.advance(0.2)
    j1b = store.claim("w3", 30)  # w1's lease expired: the job returns, attempt 2
    assert (j1b.id, j1b.attempt, j1b.lease_owner) == (first, 2, "w3")
    assert store.renew(first, "w1", 30) == (False, False)  # w1 lost it
    assert not store.finish(first, "w1", "succeeded")
    assert store.finish(first, "w3", "succeeded", result={"ok": 1})
    assert statuses(store, first) == ["queued", "running", "running", "succeeded"]
    lost = [e.payload for e in store.events(first) if e.payload.get("resumed_after_lost_worker")]
    assert lost and lost[0]["resumed_after_lost_worker"] == "w1"


def test_lost_worker_limit_fails_the_job(db_url, tiny_request):
    clock = Clock()
    store = Store(db_url, Limits(0, 0), clock=clock)
    job = store.submit(tiny_request(), "u", "cli")
    for n in range(2):
        assert store.claim(f"w{n}", lease_s=10, max_attempts=2).id == job
        clock.advance(11)
    assert store.claim("w9", 30, max_attempts=2) is None
    assert store.get(job).status == "failed" and "lost 2 times" in store.get(job).error


# ---- many processes ------------------------------------------------------------------------------

SUBMITTER = textwrap.dedent("""
    import sys
    from factory.queue.jobs import Limits, Store
    url, proc, n, template = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), open(sys.argv[4]).read()
    store = Store(url, Limits(0, 0))
    for i in range(n):
        store.submit(template.replace("me/tiny-job", f"p{proc}/m{i}"), f"user{proc}", "cli")
""")


def test_twenty_processes_submit_a_thousand_requests(db_url, tiny_request, tmp_path):
    template = tmp_path / "request.yaml"
    template.write_text(tiny_request())
    Store(db_url)  # schema first, as a deployment would
    procs = [subprocess.Popen([sys.executable, "-c", SUBMITTER, db_url, str(p), "50", str(template)],
                              stderr=subprocess.PIPE, text=True) for p in range(20)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    jobs = Store(db_url).list(limit=5000)
    assert len(jobs) == 1000
    assert len({j.id for j in jobs}) == 1000
    assert {j.hub_model_id for j in jobs} == {f"p{p}/m{i}" for p in range(20) for i in range(50)}


def test_four_workers_drain_forty_jobs_each_exactly_once(db_url, tiny_request, home, tmp_path):
    """Four workers compete for forty jobs: each job is claimed once and runs once. How the jobs spread
    over the workers depends on the machine's load, so it is printed, not asserted."""
    store = Store(db_url, Limits(0, 0))
    ids = [store.submit(tiny_request(max_steps=1, hub_model_id=f"me/drain-{i}", val_set_size=0), "u", "cli")
           for i in range(40)]
    workers = [start_worker(home, db_url, tmp_path / f"w{n}.log", "--drain") for n in range(4)]
    for w in workers:
        w.wait(timeout=600)
    logs = "".join((tmp_path / f"w{n}.log").read_text() for n in range(4))
    assert all(w.returncode == 0 for w in workers), logs[-3000:]
    owners = []
    for job_id in ids:
        job = store.get(job_id)
        assert job.status == "succeeded", (job_id, job.error, logs[-2000:])
        evs = store.events(job_id)
        assert [e.id for e in evs] == sorted(e.id for e in evs)
        assert statuses(store, job_id) == ["queued", "running", "succeeded"], job_id  # claimed exactly once
        assert [e.payload["stage"] for e in evs if e.kind == "stage"] == STAGES
        owners.append(next(e.payload["worker"] for e in evs if e.payload.get("status") == "running"))
        assert job.result["published"]["repo_id"] == f"me/drain-{job_id - ids[0]}"
    print("jobs per worker:", sorted(Counter(owners).values(), reverse=True))


# ---- a real job killed, stopped, cancelled -------------------------------------------------------

def _train_steps(store: Store, job_id: int) -> int:
    return max((e.payload.get("step", 0) for e in store.events(job_id)
                if e.kind == "progress" and e.payload.get("stage") == "train"), default=0)


def _adapter(store: Store, home: Path, job_id: int):
    from safetensors.torch import load_file

    return load_file(str(home / "runs" / store.get(job_id).run_name / "adapter" / "adapter_model.safetensors"))


def test_sigkilled_worker_is_resumed_from_its_checkpoint(db_url, tiny_request, home, tmp_path):
    store = Store(db_url, Limits(0, 0))
    request = tiny_request(max_steps=40, save_steps=5, hub_model_id="me/killed")
    killed = store.submit(request, "u", "cli")
    w = start_worker(home, db_url, tmp_path / "w1.log", "--once", FACTORY_PAUSE_AT_STEP=10)
    wait_for(lambda: paused(w), 300, "the worker to stop itself after checkpoint-10")
    w.send_signal(signal.SIGKILL)  # killed at a known point: right after checkpoint-10
    w.wait()
    ckpt = home / "runs" / store.get(killed).run_name / "checkpoints" / "checkpoint-10"
    assert (ckpt / "trainer_state.json").is_file(), (tmp_path / "w1.log").read_text()[-3000:]
    assert store.get(killed).status == "running" and _train_steps(store, killed) <= 10  # progress is throttled
    assert not (home / "hub" / "models" / "me" / "killed").exists()

    from factory.queue.jobs import now

    wait_for(lambda: store.get(killed).lease_expires < now(), 30, "the dead worker's lease (3 s) to expire")
    w2 = start_worker(home, db_url, tmp_path / "w2.log", "--once")
    assert w2.wait(timeout=300) == 0, (tmp_path / "w2.log").read_text()[-3000:]
    job = store.get(killed)
    assert job.status == "succeeded" and job.attempt == 2, job.error
    messages = [e.payload.get("message", "") for e in store.events(killed)]
    resumed = [m for m in messages if m.startswith("resuming from checkpoint-")]
    assert resumed and int(resumed[0].split("-")[-1]) == 10  # not from zero

    reference = store.submit(request.replace("me/killed", "me/uninterrupted"), "u", "cli")
    w3 = start_worker(home, db_url, tmp_path / "w3.log", "--once")
    assert w3.wait(timeout=300) == 0
    ref = store.get(reference)
    assert ref.status == "succeeded"
    assert job.result["eval_loss"] == pytest.approx(ref.result["eval_loss"], rel=1e-5, abs=1e-6)
    a, b = _adapter(store, home, killed), _adapter(store, home, reference)
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_sigterm_puts_the_job_back_with_a_checkpoint(db_url, tiny_request, home, tmp_path):
    store = Store(db_url, Limits(0, 0))
    job_id = store.submit(tiny_request(max_steps=400, save_steps=1000, hub_model_id="me/termed"), "u", "cli")
    w = start_worker(home, db_url, tmp_path / "w.log", FACTORY_PAUSE_AT_STEP=3)
    wait_for(lambda: paused(w), 300, "the worker to stop itself after step 3")
    w.send_signal(signal.SIGTERM)  # delivered when it runs again, between steps 3 and 4
    w.send_signal(signal.SIGCONT)
    assert w.wait(timeout=120) == 0, (tmp_path / "w.log").read_text()[-3000:]
    job = store.get(job_id)
    assert job.status == "queued" and job.lease_owner is None
    ckpts = list((home / "runs" / store.get(job_id).run_name / "checkpoints").glob("checkpoint-*"))
    assert [c.name for c in ckpts] == ["checkpoint-4"]  # saved on SIGTERM (save_steps is 1000), at the next step
    assert statuses(store, job_id)[-1] == "queued"
    assert "SIGTERM" in (tmp_path / "w.log").read_text()


def test_cancel_a_running_job_stops_it_and_never_publishes(db_url, tiny_request, home, tmp_path):
    store = Store(db_url, Limits(0, 0))
    job_id = store.submit(tiny_request(max_steps=2000, save_steps=1000, hub_model_id="me/cancelled"), "carol", "cli")
    w = start_worker(home, db_url, tmp_path / "w.log", "--once")
    wait_for(lambda: _train_steps(store, job_id) >= 2, 300, "two training steps")
    assert store.cancel(job_id, "carol").status == "running"  # a running job is asked to stop
    assert w.wait(timeout=120) == 0, (tmp_path / "w.log").read_text()[-3000:]
    job = store.get(job_id)
    assert job.status == "cancelled" and "nothing was published" in job.error
    assert _train_steps(store, job_id) < 2000
    assert not (home / "hub" / "models" / "me" / "cancelled").exists()
    assert not (home / "runs" / store.get(job_id).run_name / "stages" / "publish.json").exists()


def test_a_cancelled_job_cannot_enter_publish(db_url, tiny_request):
    store = Store(db_url, Limits(0, 0))
    job_id = store.submit(tiny_request(), "u", "cli")
    store.claim("w", 30)
    store.cancel(job_id, "u")
    assert store.begin_publish(job_id, "w") == "cancel"
    other = store.submit(tiny_request(), "u", "cli")
    store.claim("w", 30)
    assert store.begin_publish(other, "w") is None
    with pytest.raises(UserError, match="already publishing"):
        store.cancel(other, "u")


def test_every_logged_loss_reaches_the_events_however_fast_they_come(db_url, tiny_request):
    """A burst of logged steps (a re-attached worker reading a Jobs run's backlog) is never thinned by the
    progress throttle: the loss curve has every point; plain progress is still throttled."""
    from factory.base.progress import Event
    from factory.queue.worker import JobReporter

    store = Store(db_url, Limits(0, 0))
    job_id = store.submit(tiny_request(), "u", "cli")
    reporter = JobReporter(store, store.claim("w", 30), "w", min_interval_s=3600)  # nothing passes on time alone
    for step in range(1, 31):
        reporter.emit(Event("train", step=step, total=100, loss=(2.0 - step / 100) if step >= 4 else None,
                            extra={"step": step}))
    progress = [e.payload for e in store.events(job_id) if e.kind == "progress"]
    assert [p["loss_step"] for p in progress if "loss" in p] == list(range(4, 31))
    assert [p["step"] for p in progress if "loss" not in p] == [1]  # the first; the other two unlogged steps wait

def test_user_errors_fail_at_once_and_transient_ones_retry(db_url, tiny_request, home, monkeypatch):
    from factory.base.errors import TransientError
    from factory.queue.worker import Worker

    monkeypatch.setenv("FACTORY_RETRY_BASE_SECONDS", "0")
    store = Store(db_url, Limits(0, 0))
    calls = []

    def flaky(job, reporter):
        calls.append(job.id)
        if len(calls) == 1:
            raise TransientError("Hub answered 503")
        if len(calls) == 2:
            raise UserError("row 3 of data.jsonl has no 'output'")
        return {"ok": True}

    a, b = store.submit(tiny_request(), "u", "cli"), store.submit(tiny_request(), "u", "cli")
    assert Worker(store, "w", runner=flaky).run(drain=True) == 3
    assert calls == [a, a, b]
    assert store.get(a).status == "failed" and "has no 'output'" in store.get(a).error
    assert statuses(store, a) == ["queued", "running", "queued", "running", "failed"]
    assert store.get(b).status == "succeeded"


# ---- the database goes away ----------------------------------------------------------------------

def test_worker_survives_a_postgresql_restart(pg_url, tiny_request, home, tmp_path):
    import shutil

    if not shutil.which("pg_ctlcluster") or os.geteuid() != 0:
        missing("restarting PostgreSQL needs pg_ctlcluster and root (the CI machine has both)", "FACTORY_REQUIRE_ROOT")
    cluster = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout.split()
    version, name = cluster[0], cluster[1]
    store = Store(pg_url, Limits(0, 0))
    log = tmp_path / "w.log"
    w = start_worker(home, pg_url, log, "--max-jobs", "1")
    wait_for(lambda: "polling" in log.read_text(), 60, "the worker to start polling")
    try:
        subprocess.run(["pg_ctlcluster", version, name, "stop", "-m", "fast"], check=True)
        wait_for(lambda: "database unavailable" in log.read_text(), 30, "the worker to notice")
    finally:
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True)
    job_id = wait_for(lambda: _try_submit(store, tiny_request()), 60, "the database to accept a job", 0.5)
    assert w.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert "database is back" in log.read_text()
    assert store.get(job_id).status == "succeeded"


def _try_submit(store: Store, request: str):
    from sqlalchemy.exc import DBAPIError

    try:
        return store.submit(request, "u", "cli")
    except DBAPIError:
        return None


# ---- the disk under $FACTORY_HOME fills up -------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs as FACTORY_HOME (needs root to mount; the CI machine runs as root)."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        missing("mounting a small tmpfs needs root (and the right to mount)", "FACTORY_REQUIRE_ROOT")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_full_disk_refuses_submissions_and_loses_nothing(small_disk, tiny_request, monkeypatch, tmp_path, capsys):
    import threading

    from factory.cli.main import main
    from factory.base.errors import DiskFull
    from factory.queue.worker import Worker

    monkeypatch.setenv("FACTORY_HOME", str(small_disk))
    monkeypatch.delenv("FACTORY_DB_URL", raising=False)
    monkeypatch.setenv("FACTORY_POLL_SECONDS", "0.1")
    store = Store(limits=Limits(0, 0))
    first = store.submit(tiny_request(hub_model_id="me/before-full"), "u", "cli")
    filler = small_disk / "filler"
    _fill(filler)
    with pytest.raises(DiskFull, match="is full; nothing was written"):
        for i in range(200):  # the WAL has some slack; the disk runs out within a few submissions
            store.submit(tiny_request(hub_model_id=f"me/full-{i}"), "u", "cli")
    request_file = tmp_path / "req.yaml"
    request_file.write_text(tiny_request(hub_model_id="me/cli-full"))
    assert main(["submit", str(request_file)]) == 1
    assert "is full" in capsys.readouterr().err
    before = {j.id: j.hub_model_id for j in store.list(limit=500)}
    assert before[first] == "me/before-full" and "me/cli-full" not in before.values()

    log = tmp_path / "worker.log"
    done = []
    worker = Worker(store, "w", runner=lambda job, rep: done.append(job.id) or {"ok": True}, out=log.open("w"))
    thread = threading.Thread(target=lambda: worker.run(max_jobs=len(before)))
    thread.start()  # a worker on a full disk cannot claim; it waits instead of crashing
    wait_for(lambda: "database or disk is full" in log.read_text(), 30, "the worker to report the full disk")
    assert not done
    filler.unlink()
    thread.join(timeout=60)
    assert sorted(done) == sorted(before)  # every job that was accepted before the disk filled still runs
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert store.submit(tiny_request(hub_model_id="me/after-full"), "u", "cli")


def test_queue_commands(db_url, tiny_request, home, tmp_path, monkeypatch, capsys):
    from factory.cli.main import main

    monkeypatch.setenv("FACTORY_DB_URL", db_url)
    monkeypatch.setenv("FACTORY_SUBMITTER", "dora")
    req = tmp_path / "job.yaml"
    req.write_text(tiny_request(hub_model_id="me/from-cli"))
    assert main(["submit", str(req)]) == 0
    job_id = int(capsys.readouterr().out.split()[1])
    assert main(["jobs"]) == 0
    assert "me/from-cli" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_request() + "lora_rr: 8\n")
    assert main(["submit", str(bad)]) == 2
    assert "did you mean `lora_r`" in capsys.readouterr().err
    monkeypatch.setenv("FACTORY_POLL_SECONDS", "0.1")
    assert main(["worker", "--once"]) == 0
    assert main(["status", str(job_id)]) == 0
    out = capsys.readouterr().out
    assert f"job {job_id}: succeeded" in out and "published: file://" in out
    assert main(["logs", str(job_id), "--follow"]) == 0  # returns: the job has ended
    logs = capsys.readouterr().out
    assert logs.index("status -> queued") < logs.index("stage train") < logs.index("status -> succeeded")
    assert main(["cancel", str(job_id)]) == 2
    assert "already succeeded" in capsys.readouterr().err
    monkeypatch.setenv("FACTORY_SUBMITTER", "eve")
    second = Store(db_url, Limits(0, 0)).submit(tiny_request(), "dora", "cli")
    assert main(["cancel", str(second)]) == 2
    assert "only its submitter (dora)" in capsys.readouterr().err
    assert main(["status", "424242"]) == 2
