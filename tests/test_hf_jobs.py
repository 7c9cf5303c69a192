"""The Hugging Face Jobs backend (FACTORY_BACKEND=hf-jobs) against the test Hub server's Jobs routes: the server
runs each job's command (`factory run --events jsonl`) as a local subprocess and streams its output as the Hub's
log events. A whole job: submitted, launched, its events recorded, published, succeeded; cancel mid-run; a worker
killed while following and another re-attaching without a second launch; a remote job that fails; the token
nowhere in clear."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import CANARY  # tests/ is on sys.path under pytest
from factory.queue.jobs import Limits, Store

WAIT_S = 300  # a generous bound on waiting for a subprocess; no assertion depends on how long anything takes


def _request(tmp_path: Path, name: str = "request", **over) -> str:
    req = {"base_model": "org/tiny-base", "datasets": [{"path": "org/songs", "type": "alpaca"}],
           "sequence_len": 64, "max_steps": 3, "adapter": "lora", "lora_target_linear": True,
           "learning_rate": 1e-3, "hub_model_id": "me/tiny-tuned", "val_set_size": 4, "bf16": False,
           "chat_template": "chatml", "logging_steps": 1, **over}
    return yaml.safe_dump(req)


@pytest.fixture
def jobs_hub(hub, home, tmp_path, monkeypatch):
    """The hub server with its Jobs routes set up as another machine: its own FACTORY_HOME and HF cache."""
    remote = tmp_path / "remote"
    remote.mkdir()
    hub.state.job_env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(remote), "FACTORY_HOME": str(remote / "factory"), "HF_HOME": str(remote / "hf"),
        "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0", "TOKENIZERS_PARALLELISM": "false",
    }
    hub.state.job_cwd = str(remote)
    monkeypatch.setenv("FACTORY_BACKEND", "hf-jobs")
    monkeypatch.setenv("FACTORY_JOBS_IMAGE", "registry.example/model-factory:test")
    monkeypatch.setenv("FACTORY_JOBS_FLAVOR", "t4-small")
    monkeypatch.setenv("FACTORY_JOBS_TIMEOUT", "10m")  # the server stops a job that hangs: a test never waits forever
    monkeypatch.setenv("FACTORY_POLL_SECONDS", "0.2")
    monkeypatch.delenv("FACTORY_JOBS_PRICES", raising=False)
    return hub


def labels_at_launch(server, remote_id: str) -> dict:
    return server.state.launched_labels[remote_id]


def _wait(cond, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def _no_canary_anywhere(hub, store: Store, roots: list[Path]) -> None:
    for job in hub.state.jobs.values():
        assert CANARY not in json.dumps(job.spec)  # command, environment, labels: everything but the secrets
        assert list(job.secrets) == ["HF_TOKEN"] and job.secrets["HF_TOKEN"] == CANARY  # it travelled as a secret
        assert all(CANARY not in line for _, line in job.logs)
        assert CANARY not in json.dumps(job.info("h"))
    for j in store.list():
        assert CANARY not in json.dumps([str(v) for v in j.__dict__.values()])
        assert all(CANARY not in json.dumps(e.payload) for e in store.events(j.id))
    leaks = [str(p) for root in roots for p in root.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert leaks == []


def test_a_job_runs_on_hf_jobs_publishes_and_leaks_no_token(jobs_hub, home, tmp_path):
    from factory.queue.worker import Worker

    store = Store(limits=Limits(0, 0))
    job_id = store.submit(_request(tmp_path), "alice", "cli")
    assert Worker(store, "w1").run(drain=True) == 1
    job = store.get(job_id)
    assert job.status == "succeeded", job.error
    assert jobs_hub.state.launches == 1
    remote = jobs_hub.state.jobs[job.remote_job]
    assert remote.stage == "COMPLETED" and remote.spec["flavor"] == "t4-small"
    assert remote.spec["command"][:5] == ["factory", "run", "--request-env", "FACTORY_REQUEST", "--carried-env"]
    assert remote.spec["labels"]["factory-job"] == str(job_id)
    # the publish label was added to the launch's labels, not put in their place (the route replaces them all)
    assert remote.spec["labels"] == {**labels_at_launch(jobs_hub, job.remote_job), "factory-publish": "go"}
    assert remote.spec["labels"]["name"] == f"factory-{job.run_name}"

    # The publish happened on the remote side; the worker recorded the revision it made.
    repo = jobs_hub.state.repos[("model", "me/tiny-tuned")]
    sha, files = repo.head()
    assert job.result["published"]["revision"] == sha and job.run_name in repo.commits[-1][2]
    card = files["README.md"].decode()
    assert "ran on Hugging Face Jobs, flavor `t4-small` (1x T4, $0.40/h)" in card
    bill = job.result["hf_job"]
    assert bill["id"] == job.remote_job and bill["flavor"] == "t4-small" and bill["running_s"] is not None
    assert bill["usd"] == round(math.ceil(bill["running_s"] / 60) * 0.006667, 4)  # billed by the started minute

    # The job's life as the front doors read it: the same events as a local run, after the launch.
    events = store.events(job_id)
    stages = [e.payload["stage"] for e in events if e.kind == "stage"]
    assert stages == ["launch", "resolve", "data", "train", "merge", "eval", "export", "card", "publish"]
    launch = next(e.payload["message"] for e in events if e.kind == "message" and "launched" in e.payload.get("message", ""))
    assert f"launched Hugging Face job {job.remote_job} on t4-small (1x T4, $0.40/h" in launch
    train = [e.payload for e in events if e.kind == "progress" and e.payload["stage"] == "train"]
    assert train[-1]["step"] == train[-1]["total"] == 3 and any("loss" in p for p in train)
    assert [e.payload["status"] for e in events if e.kind == "status"] == ["queued", "running", "succeeded"]
    assert job.remote_seen == max(json.loads(line)["seq"] for _, line in remote.logs if line.startswith('{"factory_event"'))

    _no_canary_anywhere(jobs_hub, store, [tmp_path])


def test_cancel_mid_run_cancels_the_hub_job_and_publishes_nothing(jobs_hub, home, tmp_path):
    from factory.queue.worker import Worker

    store = Store(limits=Limits(0, 0))
    job_id = store.submit(_request(tmp_path, max_steps=100_000, val_set_size=0), "alice", "cli")
    worker = threading.Thread(target=Worker(store, "w1").run, kwargs={"drain": True})
    worker.start()
    _wait(lambda: any(e.kind == "progress" and e.payload["stage"] == "train" for e in store.events(job_id)),
          "the remote run to report a training step")
    store.cancel(job_id, "alice")
    worker.join(WAIT_S)
    assert not worker.is_alive()
    job = store.get(job_id)
    assert job.status == "cancelled" and "nothing was published" in job.error
    remote = jobs_hub.state.jobs[job.remote_job]
    assert remote.stage == "CANCELED" and remote.proc.wait(WAIT_S) != 0  # the process was killed
    assert ("model", "me/tiny-tuned") not in jobs_hub.state.repos
    assert any(r.endswith(f"/{job.remote_job}/cancel") for r in jobs_hub.state.requests)


def test_a_killed_worker_is_replaced_without_a_second_launch(jobs_hub, home, tmp_path):
    """Worker A (a process) launches and follows; it is killed; worker B takes the expired lease, re-attaches to
    the same Hub job, records only the events A had not, and finishes the job."""
    from factory.queue.worker import Worker

    db = f"sqlite:///{home / 'jobs.db'}"
    store = Store(db, limits=Limits(0, 0))
    job_id = store.submit(_request(tmp_path, max_steps=40), "alice", "cli")
    env = {**os.environ, "FACTORY_DB_URL": db, "FACTORY_LEASE_SECONDS": "3", "HF_HUB_OFFLINE": "0"}
    a = subprocess.Popen([sys.executable, "-m", "factory", "worker", "--once"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: store.get(job_id).remote_job and any(e.payload.get("stage") == "data" for e in store.events(job_id)),
              "worker A to launch the job and record its first stages")
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait()
    before = store.get(job_id)
    assert before.status == "running" and jobs_hub.state.launches == 1
    seen_by_a = before.remote_seen

    assert Worker(store, "w2").run(max_jobs=1) == 1  # claims once A's lease has expired
    job = store.get(job_id)
    assert job.status == "succeeded", job.error
    assert jobs_hub.state.launches == 1 and job.remote_job == before.remote_job
    events = store.events(job_id)
    assert any("re-attached to Hugging Face job" in e.payload.get("message", "") for e in events)
    stages = [e.payload["stage"] for e in events if e.kind == "stage" and e.payload["stage"] != "launch"]
    assert stages == ["resolve", "data", "train", "merge", "eval", "export", "card", "publish"]  # none recorded twice
    assert job.remote_seen > seen_by_a
    statuses = [e.payload for e in events if e.kind == "status"]
    assert "resumed_after_lost_worker" in statuses[-2] and statuses[-1]["status"] == "succeeded"


def _launch_by_hand(server, store: Store, job_id: int):
    """The Hub job a worker launches for this job, launched here without a worker storing its id."""
    from huggingface_hub import HfApi

    from factory.queue.hf_jobs import command, labels

    env = {"FACTORY_REQUEST": store.get(job_id).request, "HF_ENDPOINT": server.url,
           "FACTORY_CARRIED": '{"pieces": []}',
           "FACTORY_JOBS_LABELS": json.dumps(labels(store, job_id)), "FACTORY_JOBS_NAMESPACE": "me"}
    return HfApi(endpoint=server.url, token=CANARY).run_job(
        image="img", command=command(1, store.get(job_id).run_name), env=env, secrets={"HF_TOKEN": CANARY}, flavor="t4-small",
        labels=labels(store, job_id))


def test_a_hub_job_whose_id_was_never_stored_is_adopted(jobs_hub, home, tmp_path):
    """A worker that died between launching and storing the Jobs id leaves a labelled Hub job: the next adopts it."""
    from factory.queue.worker import Worker

    store = Store(limits=Limits(0, 0))
    job_id = store.submit(_request(tmp_path), "alice", "cli")
    _launch_by_hand(jobs_hub, store, job_id)
    assert Worker(store, "w1").run(drain=True) == 1
    job = store.get(job_id)
    assert job.status == "succeeded", job.error
    assert jobs_hub.state.launches == 1
    assert any("adopted Hugging Face job" in e.payload.get("message", "") for e in store.events(job_id))


def test_a_cancel_while_the_remote_waits_to_publish_publishes_nothing(jobs_hub, home, tmp_path):
    """The remote run stops at its publish gate until the worker has moved the job into publish in the queue
    and said go: a cancel that came in before then wins, however late the worker reads the gate line."""
    from factory.base.errors import Stopped
    from factory.queue.hf_jobs import PUBLISH_LABEL, Remote
    from factory.admission.admission import readmit
    from factory.queue.worker import JobReporter

    store = Store(limits=Limits(0, 0))
    job_id = store.submit(_request(tmp_path), "alice", "cli")
    _launch_by_hand(jobs_hub, store, job_id)
    remote = next(iter(jobs_hub.state.jobs.values()))
    _wait(lambda: any('"gate": "publish"' in line for _, line in remote.logs), "the remote run to reach its publish gate")
    job = store.claim("w1", 60)
    store.cancel(job_id, "alice")  # the worker has not read the gate line yet
    follower = Remote(job, JobReporter(store, job, "w1"), readmit(job.request, job.submitter, job.front_door, "job"))
    with pytest.raises(Stopped, match="cancel"):
        follower.follow(follower.start())
    assert remote.proc.wait(WAIT_S) != 0 and remote.stage == "CANCELED"
    assert PUBLISH_LABEL not in remote.spec["labels"]
    assert ("model", "me/tiny-tuned") not in jobs_hub.state.repos


def test_a_remote_job_that_fails_fails_the_job_with_its_last_lines(jobs_hub, home, tmp_path):
    from factory.queue.worker import Worker

    rows = "".join(json.dumps({"instruction": f"Name song {i}", "answer": f"Song {i}"}) + "\n" for i in range(20))
    jobs_hub.state.add_repo("dataset", "org/no-output", {"data/train.jsonl": rows.encode()})
    store = Store(limits=Limits(0, 0))
    job_id = store.submit(_request(tmp_path, datasets=[{"path": "org/no-output", "type": "alpaca"}]), "alice", "cli")
    Worker(store, "w1").run(drain=True)
    job = store.get(job_id)
    assert job.status == "failed" and jobs_hub.state.launches == 1
    assert f"Hugging Face job {job.remote_job} ended in ERROR: exit code 2" in job.error
    assert "--- last lines ---" in job.error and "output" in job.error.split("--- last lines ---")[1]
    _no_canary_anywhere(jobs_hub, store, [tmp_path])


def test_the_operator_must_name_an_image_and_a_known_flavor(jobs_hub, home, tmp_path, monkeypatch):
    from factory.queue.worker import Worker

    store = Store(limits=Limits(0, 0))
    monkeypatch.delenv("FACTORY_JOBS_IMAGE")
    first = store.submit(_request(tmp_path), "alice", "cli")
    Worker(store, "w1").run(once=True)
    assert store.get(first).status == "failed" and "FACTORY_JOBS_IMAGE" in store.get(first).error
    monkeypatch.setenv("FACTORY_JOBS_IMAGE", "img")
    second = store.submit(_request(tmp_path, compute={"flavor": "a900-huge"}), "alice", "cli")
    Worker(store, "w1").run(once=True)
    assert "'a900-huge' is not a Jobs flavor; known: cpu-basic, t4-medium, t4-small, test-gpux2" in store.get(second).error
    assert jobs_hub.state.launches == 0
    monkeypatch.setenv("FACTORY_BACKEND", "kubernetes")
    from factory.base.errors import UserError

    with pytest.raises(UserError, match="FACTORY_BACKEND='kubernetes': choose one of local, hf-jobs"):
        Worker(store)


def test_multi_gpu_flavors_launch_one_process_per_gpu():
    from factory.queue.hf_jobs import command

    assert command(1, "job-7-ab12")[:2] == ["factory", "run"] and command(1, "job-7-ab12")[-1] == "job-7-ab12"
    assert command(1, "job-7-ab12", "hf:alice")[-2:] == ["--identity", "hf:alice"]
    cmd = command(4, "job-7-ab12")
    assert cmd[:6] == ["accelerate", "launch", "--multi_gpu", "--num_processes", "4", "--num_machines"]
    assert cmd[cmd.index("-m"):][:3] == ["-m", "factory", "run"]


def test_a_two_gpu_flavor_runs_one_process_per_gpu_and_reports_once(jobs_hub, home, tmp_path, monkeypatch):
    """`accelerate launch` with two processes (gloo on this CPU): one event stream, one publish."""
    from factory.queue.worker import Worker

    if not (Path(sys.executable).parent / "accelerate").exists():
        from conftest import missing

        missing("the accelerate command is not installed beside this Python", "FACTORY_REQUIRE_EXTRAS")
    monkeypatch.setenv("FACTORY_JOBS_FLAVOR", "test-gpux2")
    store = Store(limits=Limits(0, 0))
    job_id = store.submit(_request(tmp_path, micro_batch_size=2), "alice", "cli")
    Worker(store, "w1").run(drain=True)
    job = store.get(job_id)
    remote = jobs_hub.state.jobs[job.remote_job]
    assert job.status == "succeeded", job.error + "\n".join(line for _, line in remote.logs[-30:])
    assert remote.spec["command"][:5] == ["accelerate", "launch", "--multi_gpu", "--num_processes", "2"]
    events = store.events(job_id)
    stages = [e.payload["stage"] for e in events if e.kind == "stage"]
    assert stages == ["launch", "resolve", "data", "train", "merge", "eval", "export", "card", "publish"]
    assert sum(line.startswith('{"factory_event"') and '"result"' in line for _, line in remote.logs) == 1
    trained = [e.payload["message"] for e in events if e.kind == "message" and " steps in " in e.payload["message"]]
    assert len(trained) == 1 and trained[0].endswith("(2 processes)")
    assert len(jobs_hub.state.repos[("model", "me/tiny-tuned")].commits) == 2  # created, then one publish
    assert "flavor `test-gpux2` (2x T4" in jobs_hub.state.repos[("model", "me/tiny-tuned")].head()[1]["README.md"].decode()


def test_factory_run_takes_a_file_or_an_environment_variable(home, monkeypatch, capsys):
    from factory.cli.main import main

    assert main(["run"]) == 2 and "give a request file" in capsys.readouterr().err
    monkeypatch.delenv("NO_SUCH_REQUEST", raising=False)
    assert main(["run", "--request-env", "NO_SUCH_REQUEST"]) == 2
    assert "NO_SUCH_REQUEST: that environment variable is empty or unset" in capsys.readouterr().err
    monkeypatch.setenv("BAD_REQUEST", "base_model: org/x\nlerning_rate: 1\n")
    assert main(["run", "--request-env", "BAD_REQUEST", "--events", "jsonl"]) == 2
    assert "$BAD_REQUEST" in capsys.readouterr().err


# ---- what a job carries ---------------------------------------------------------------------------------

def _demo_on_the_server(server, tmp_path: Path) -> str:
    """The repository's own examples/demo.yaml, its base and data put on the test Hub (built here as `factory
    demo` builds them), cut to a few steps: its held-out eval file exists on the worker's disk only."""
    from factory.base.progress import Silent
    from factory.demo import demo
    from factory.hub.local import LocalHub

    local = LocalHub(tmp_path / "demo-hub")
    demo.ensure_assets(local, Silent())  # also writes $FACTORY_HOME/evals/factory_demo_heldout.jsonl here
    for repo_id, kind in ((demo.BASE_ID, "model"), (demo.DATASET_ID, "dataset")):
        folder, _ = local.snapshot(repo_id, kind)
        server.state.add_repo(kind, repo_id, {str(p.relative_to(folder)): p.read_bytes()
                                              for p in folder.rglob("*") if p.is_file()})
    req = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "demo.yaml").read_text())
    req.update({"max_steps": 4, "evals": {"tasks": ["factory_demo_heldout"], "limit": 8}, "sequence_len": 128,
                "hub_model_id": "me/tiny-llama-demo-instruct"})
    return yaml.safe_dump(req, sort_keys=False)


def test_the_demo_runs_on_hf_jobs_with_only_what_it_carries(jobs_hub, home, tmp_path):
    """The remote machine shares nothing with the worker: the held-out file travels in the job's environment,
    is checked by hash there, and the eval and the contamination check read it."""
    from factory.queue.worker import Worker

    text = _demo_on_the_server(jobs_hub, tmp_path)
    heldout = home / "evals" / "factory_demo_heldout.jsonl"
    store = Store(limits=Limits(0, 0))
    job_id = store.submit(text, "alice", "cli")
    assert Worker(store, "w1").run(drain=True) == 1
    job = store.get(job_id)
    remote = jobs_hub.state.jobs[job.remote_job]
    assert job.status == "succeeded", job.error + "\n".join(line for _, line in remote.logs[-20:])
    remote_home = Path(jobs_hub.state.job_env["FACTORY_HOME"])
    assert remote_home != home and (remote_home / "evals" / heldout.name).read_bytes() == heldout.read_bytes()
    carried = json.loads(remote.spec["environment"]["FACTORY_CARRIED"])
    assert carried["repo"] is None and [p["dest"] for p in carried["pieces"]] == [f"evals/{heldout.name}"]
    assert carried["pieces"][0]["size"] == heldout.stat().st_size
    logs = "\n".join(line for _, line in remote.logs)
    assert f"carried: contamination.benchmarks (factory_demo_heldout) -> $FACTORY_HOME/evals/{heldout.name}" in logs
    events = [e.payload.get("message", "") for e in store.events(job_id)]
    assert any(m.startswith("carried 1 file(s)") and "in its environment" in m for m in events), events
    scores = job.result["scores"]["factory_demo_heldout"]  # the eval read the carried file on the remote side
    assert set(scores) == {"base", "finetuned"} and all("n" not in s or s["n"] == 8 for s in scores.values()), scores
    assert ("model", "me/tiny-llama-demo-instruct") in jobs_hub.state.repos


@pytest.mark.parametrize("over, words", [
    ({"base_model": "{root}/model"}, "base_model: '{root}/model': a local model folder cannot travel with a job"),
    ({"datasets": [{"path": "{root}/big.jsonl", "type": "alpaca"}]},
     "exceed the 48 KiB a job carries in its environment; set FACTORY_JOBS_FILES_REPO"),
    ({"lora_model_dir": "{root}/model"}, "lora_model_dir: '{root}/model': an adapter folder cannot travel with a job"),
    ({"contamination": {"embedding_model": "{root}/model"}}, "a local embedding model cannot travel with a job"),
])
def test_what_cannot_travel_is_refused_at_submit(jobs_hub, home, tmp_path, monkeypatch, over, words):
    from factory.base.errors import UserError

    root = tmp_path / "granted"
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").write_text("{}")
    rows = "".join(json.dumps({"instruction": f"Name song {i} " + "la " * 30, "output": f"Song {i}"}) + "\n"
                   for i in range(600))
    (root / "big.jsonl").write_text(rows)  # over the inline budget
    monkeypatch.setenv("FACTORY_DATA_ROOTS", str(root))
    store = Store(limits=Limits(0, 0))
    fill = json.loads(json.dumps(over).replace("{root}", str(root)))
    with pytest.raises(UserError) as refused:
        store.submit(_request(tmp_path, **fill), "alice", "cli")
    assert words.replace("{root}", str(root)) in str(refused.value) and "hf-jobs" in str(refused.value)
    assert store.list() == []  # nothing queued to fail later


def test_a_large_file_is_uploaded_once_by_hash_and_fetched_by_the_job(jobs_hub, home, tmp_path, monkeypatch):
    from factory.queue import carry
    from factory.queue.worker import Worker

    root = tmp_path / "granted"
    root.mkdir()
    rows = "".join(json.dumps({"instruction": f"Name song {i} " + "la " * 30, "output": f"Song {i}"}) + "\n"
                   for i in range(600))
    (root / "big.jsonl").write_text(rows)
    monkeypatch.setenv("FACTORY_DATA_ROOTS", str(root))
    monkeypatch.setenv("FACTORY_JOBS_FILES_REPO", "me/factory-files")
    store = Store(limits=Limits(0, 0))
    text = _request(tmp_path, datasets=[{"path": str(root / "big.jsonl"), "type": "alpaca"}], sequence_len=256)
    job_id = store.submit(text, "alice", "cli")
    assert Worker(store, "w1").run(drain=True) == 1
    job = store.get(job_id)
    remote = jobs_hub.state.jobs[job.remote_job]
    assert job.status == "succeeded", job.error + "\n".join(line for _, line in remote.logs[-20:])
    files = jobs_hub.state.repos[("dataset", "me/factory-files")]
    sha = hashlib.sha256(rows.encode()).hexdigest()
    assert files.private and files.head()[1][f"sha256/{sha}"] == rows.encode()
    assert CANARY not in remote.spec["environment"]["FACTORY_CARRIED"] and rows[:50] not in remote.spec["environment"]["FACTORY_CARRIED"]
    commits = len(files.commits)
    from huggingface_hub import HfApi

    from factory.admission.admission import readmit

    carry.manifest(readmit(job.request, "alice", "cli", "job"), HfApi(token=CANARY), user_token=False)
    assert len(files.commits) == commits  # the same content is not sent twice
    assert any("through FACTORY_JOBS_FILES_REPO" in e.payload.get("message", "") for e in store.events(job_id))
    _no_canary_anywhere(jobs_hub, store, [tmp_path])


def test_a_remote_run_missing_a_promised_file_fails_in_seconds_naming_it(jobs_hub, home, tmp_path):
    """The remote side checks the manifest before anything else: a piece not in the files repo, or bytes that
    do not match their hash, end the run with exit 2 and the piece named; nothing is loaded or trained."""
    manifest = {"repo": "me/factory-files", "pieces": [
        {"key": "datasets[0].path", "dest": "carried/abc/songs.jsonl", "sha256": "0" * 64, "size": 10,
         "where": ["datasets", 0, "path"], "inline": None, "repo_path": "sha256/" + "0" * 64}]}
    jobs_hub.state.add_repo("dataset", "me/factory-files", {"README.md": b"# files\n"}, private=True)
    env = {**jobs_hub.state.job_env, "HF_ENDPOINT": jobs_hub.url, "HF_TOKEN": CANARY,
           "FACTORY_REQUEST": _request(tmp_path, datasets=[{"path": "/nowhere/songs.jsonl", "type": "alpaca"}]),
           "FACTORY_CARRIED": json.dumps(manifest)}
    run = [sys.executable, "-m", "factory", "run", "--request-env", "FACTORY_REQUEST", "--carried-env", "FACTORY_CARRIED"]
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 2 and "carried file datasets[0].path is missing: me/factory-files/sha256/" in done.stderr
    assert "resolve" not in done.stderr  # it stopped before the first stage
    manifest["pieces"][0].update(inline="bm90IHRoZSBieXRlcw==", repo_path=None)  # bytes that are not the promised ones
    done = subprocess.run(run, env={**env, "FACTORY_CARRIED": json.dumps(manifest)}, capture_output=True, text=True,
                          timeout=WAIT_S)
    assert done.returncode == 2 and "its SHA-256 is not the one the worker sent" in done.stderr
    manifest["pieces"][0].update(dest="../../etc/songs.jsonl")
    done = subprocess.run(run, env={**env, "FACTORY_CARRIED": json.dumps(manifest)}, capture_output=True, text=True,
                          timeout=WAIT_S)
    assert done.returncode == 2 and "is not a plain path under $FACTORY_HOME" in done.stderr


def test_a_job_past_its_timeout_says_it_timed_out(jobs_hub, home, tmp_path, monkeypatch):
    from factory.queue.worker import Worker

    monkeypatch.setenv("FACTORY_JOBS_TIMEOUT", "20s")  # the server ends the job after 20 s, as the Hub does
    store = Store(limits=Limits(0, 0))
    job_id = store.submit(_request(tmp_path, max_steps=1_000_000, val_set_size=0), "alice", "cli")
    Worker(store, "w1").run(drain=True)
    job = store.get(job_id)
    assert job.status == "failed" and jobs_hub.state.jobs[job.remote_job].stage == "ERROR"
    assert f"Hugging Face job {job.remote_job} timed out after 20 s" in job.error and "nothing was published" in job.error
    assert ("model", "me/tiny-tuned") not in jobs_hub.state.repos


def test_a_worker_stopped_with_sigterm_hands_the_hub_job_to_the_next(jobs_hub, home, tmp_path):
    """SIGTERM (a redeploy): the worker puts the job back in the queue and leaves the Hub job running; the next
    worker re-attaches to it, and nothing is launched twice."""
    from factory.queue.worker import Worker

    db = f"sqlite:///{home / 'jobs.db'}"
    store = Store(db, limits=Limits(0, 0))
    job_id = store.submit(_request(tmp_path, max_steps=40), "alice", "cli")
    env = {**os.environ, "FACTORY_DB_URL": db, "HF_HUB_OFFLINE": "0"}
    a = subprocess.Popen([sys.executable, "-m", "factory", "worker", "--once"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait(lambda: store.get(job_id).remote_job and any(e.payload.get("stage") == "data" for e in store.events(job_id)),
          "worker A to launch the job")
    a.send_signal(signal.SIGTERM)
    assert a.wait(WAIT_S) == 0, a.stderr.read()
    handed = store.get(job_id)
    assert handed.status == "queued" and handed.remote_job
    assert jobs_hub.state.jobs[handed.remote_job].stage in ("RUNNING", "COMPLETED")  # not cancelled
    assert any("runs on and the next worker re-attaches" in (e.payload.get("reason") or e.payload.get("message") or "")
               for e in store.events(job_id)), [e.payload for e in store.events(job_id)]

    assert Worker(store, "w2").run(max_jobs=1) == 1
    job = store.get(job_id)
    assert job.status == "succeeded", job.error
    assert jobs_hub.state.launches == 1 and job.remote_job == handed.remote_job
    assert any("re-attached to Hugging Face job" in e.payload.get("message", "") for e in store.events(job_id))
