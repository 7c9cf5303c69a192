"""The trust boundary: a request never chooses where a token goes, never reaches a path outside its root
or the operator's grant, and publishing never destroys what the factory did not make."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import yaml

from conftest import CANARY, fake_token  # tests/ is on sys.path under pytest
from factory.base.errors import UserError
from factory.queue.jobs import Limits, Store


# ---- a token goes only where the operator sent it ------------------------------------------------

@pytest.fixture
def listener():
    """A TCP listener on a random loopback port that counts every connection it is offered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.1)
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.settimeout(1)
            try:
                accepted.append(conn.recv(65536))
            except OSError:
                accepted.append(b"")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    sock.close()


def _hub_request(tmp_path: Path, **over) -> Path:
    req = {"base_model": "org/tiny-base", "datasets": [{"path": "org/songs", "type": "alpaca"}],
           "sequence_len": 64, "max_steps": 2, "adapter": "lora", "lora_target_linear": True,
           "hub_model_id": "me/tiny-tuned", "chat_template": "chatml", **over}
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(req))
    return path


def _insert_job(store: Store, request_yaml: str, submitter: str = "mallory", front_door: str = "cli") -> int:
    """A job row written straight into the queue, as an older factory or a hand-edited row would be."""
    from sqlalchemy import insert

    from factory.queue.jobs import jobs

    with store.engine.begin() as conn:
        return conn.execute(insert(jobs).values(
            request=request_yaml, submitter=submitter, front_door=front_door, status="queued", progress=0.0,
            attempt=0, cancel_requested=False, created=store.now()).returning(jobs.c.id)).scalar_one()


def test_a_request_cannot_send_the_token_to_its_own_server(hub, listener, db_url, home, tmp_path, capsys):
    from factory.cli.main import main
    from factory.queue.worker import Worker

    url, accepted = listener
    request = _hub_request(tmp_path, hub_endpoint=url)
    assert main(["validate", str(request)]) == 2
    assert "not one this factory sends requests to" in capsys.readouterr().err
    store = Store(db_url, Limits(0, 0))
    with pytest.raises(UserError, match="hub_endpoint.*not one this factory sends requests to"):
        store.submit(request.read_text(), "mallory", "cli")
    with pytest.raises(UserError, match="operator-only: `hub_endpoint` chooses which of the operator's Hub endpoints"):
        store.submit(request.read_text(), "discord:123456789", "discord")  # a stranger may not name any endpoint
    assert store.list() == []
    assert main(["run", str(request)]) == 2
    job = _insert_job(store, request.read_text())  # past the door: the worker refuses it too
    Worker(store, "w").run(drain=True)
    assert store.get(job).status == "failed" and "hub_endpoint" in store.get(job).error
    assert accepted == []  # not one connection, let alone a token
    assert CANARY not in capsys.readouterr().err


def test_an_allowed_extra_endpoint_gets_only_its_own_token(hub, listener, monkeypatch):
    from factory.hub.credentials import Token, check_endpoint, endpoint_problem, hf_token
    from factory.hub.hf_hub import HfHub
    from factory.hub.local import LocalHub
    from factory.hub.choose import default_hub

    url, accepted = listener
    monkeypatch.setenv("FACTORY_HUB_ENDPOINTS", f"{url}=MIRROR_TOKEN")
    assert check_endpoint(url) == url
    assert isinstance(default_hub(url), LocalHub)  # no token configured for it: HF_TOKEN is never used there
    monkeypatch.setenv("MIRROR_TOKEN", fake_token("mirror"))
    token = hf_token(url)
    assert token.value == fake_token("mirror") and token.endpoint == url and token.source == "MIRROR_TOKEN"
    with pytest.raises(UserError, match="belongs to"):
        HfHub(Token(CANARY, "HF_TOKEN", hub.url), url)  # a token is bound to its endpoint
    assert endpoint_problem("http://example.org") and "plain http" in endpoint_problem("http://10.1.2.3:8080")
    assert endpoint_problem("https://example.org/") is None and endpoint_problem("http://[::1]:80") is not None
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.example.org")
    with pytest.raises(UserError, match="HF_ENDPOINT.*plain http"):
        check_endpoint(None)
    assert accepted == []


# ---- nothing built from request data leaves its root ---------------------------------------------

TRAVERSALS = ["../../../../x", "..%2F..%2F..%2Fx", "%2e%2e/%2e%2e/x", "/etc/passwd", "~/x", "..\\..\\x",
              "x\0y", "\uff0e\uff0e/\uff0e\uff0e/x", "\u202e../x", "file:///etc/passwd", "./../x", "a/../../x"]


@pytest.mark.parametrize("form", TRAVERSALS)
@pytest.mark.parametrize("key", ["base_model", "datasets[0].path", "revision_of_model", "hub_model_id",
                                 "contamination", "output_dir"])
def test_traversal_in_every_path_valued_field_is_refused(key, form, tiny_request_dict, home, db_url):
    req = tiny_request_dict()
    suffixed = form + ".jsonl"
    if key == "datasets[0].path":
        req["datasets"][0]["path"] = suffixed
    elif key == "contamination":
        req["contamination"] = {"benchmarks": [f"mine={suffixed}"]}
    else:
        req[key] = form
    store = Store(db_url, Limits(0, 0))
    with pytest.raises(UserError):
        store.submit(yaml.safe_dump(req), "mallory", "cli")
    assert store.list() == []


@pytest.mark.parametrize("form", TRAVERSALS)
def test_hubs_refuse_traversal_in_repo_ids_and_revisions(form, tmp_path):
    from factory.hub.local import LocalHub

    hub = LocalHub(tmp_path / "hub")
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    hub.publish("org/ok", folder, "m")
    with pytest.raises(UserError):
        hub.snapshot("org/ok", revision=form)
    with pytest.raises(UserError):
        hub.publish(f"org/{form}", folder, "m")
    with pytest.raises(UserError):
        hub.snapshot(form)
    assert {p.name for p in tmp_path.iterdir()} == {"hub", "f"}


def test_inside_resolves_before_it_decides(tmp_path):
    from factory.base.paths import inside

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "escape").symlink_to(tmp_path)
    assert inside(root, "sub", "x") == root / "sub" / "x"
    for parts in (("..", "x"), ("sub", "..", "..", "x"), ("/etc",), ("escape", "x"), ("a\0b",), ("a\\b",)):
        with pytest.raises(UserError):
            inside(root, *parts)


# ---- local files are the operator's to grant ------------------------------------------------------

@pytest.fixture
def tiny_request_dict(tiny_base, tmp_path):
    data = tmp_path / "docs.jsonl"
    data.write_text("".join('{"text": "document %d about rain"}\n' % i for i in range(20)))

    def make(**over) -> dict:
        return {"base_model": str(tiny_base), "datasets": [{"path": str(data), "type": "completion"}],
                "sequence_len": 64, "max_steps": 2, "adapter": "lora", "lora_target_linear": True,
                "excess_length_strategy": "truncate", "hub_model_id": "me/granted", **over}

    return make


def test_queued_requests_read_only_granted_folders(tiny_request_dict, tiny_base, home, db_url, tmp_path, monkeypatch):
    store = Store(db_url, Limits(0, 0))
    merged = home / "runs" / "job-1" / "merged"  # another job's output, and the factory's own state
    merged.mkdir(parents=True)
    for p in tiny_base.iterdir():
        (merged / p.name).write_bytes(p.read_bytes())
    (home / "runs" / "job-1" / "data.jsonl").write_text('{"text": "private"}\n')
    refused = {
        "another job's run folder": {"base_model": str(merged)},
        "the same, relative to the worker's folder": {"base_model": "runs/job-1/merged"},
        "a file outside every grant": {"datasets": [{"path": "/etc/passwd.json", "type": "completion"}]},
        "a run folder's data": {"datasets": [{"path": str(home / "runs/job-1/data.jsonl"), "type": "completion"}]},
        "a benchmark file in the home": {"contamination": {"benchmarks": ["x={factory_home}/runs/job-1/data.jsonl"]}},
    }
    monkeypatch.chdir(home)
    for why, over in refused.items():
        with pytest.raises(UserError, match="factory's own state|local files only"):
            store.submit(yaml.safe_dump(tiny_request_dict(**over)), "mallory", "cli")
    link = tmp_path / "innocent"  # inside the grant, pointing into the home
    link.symlink_to(merged)
    with pytest.raises(UserError, match="factory's own state"):
        store.submit(yaml.safe_dump(tiny_request_dict(base_model=str(link))), "mallory", "cli")
    assert store.list() == []
    monkeypatch.setenv("FACTORY_DATA_ROOTS", str(tmp_path / "elsewhere"))
    with pytest.raises(UserError, match="local files only inside FACTORY_DATA_ROOTS"):
        store.submit(yaml.safe_dump(tiny_request_dict()), "alice", "cli")
    monkeypatch.delenv("FACTORY_DATA_ROOTS")
    with pytest.raises(UserError, match="FACTORY_DATA_ROOTS is not set"):
        store.submit(yaml.safe_dump(tiny_request_dict()), "alice", "cli")
    monkeypatch.setenv("FACTORY_DATA_ROOTS", f"{tmp_path},{tiny_base}")
    assert store.submit(yaml.safe_dump(tiny_request_dict()), "alice", "cli")  # granted: accepted


# ---- publishing never destroys what the factory did not make -------------------------------------

def _folder(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for rel, text in files.items():
        (folder / rel).write_text(text)
    return folder


def _local_files(hub, repo_id: str) -> dict[str, str]:
    path, _ = hub.snapshot(repo_id)
    return {p.relative_to(path).as_posix(): p.read_text() for p in path.rglob("*")
            if p.is_file() and p.name != ".commit.json"}


@pytest.mark.parametrize("kind", ["local", "hf"])
def test_publish_keeps_what_the_factory_did_not_write(kind, hub, tmp_path):
    from factory.hub.hf_hub import HfHub
    from factory.hub.credentials import Token
    from factory.hub.protocol import MANIFEST
    from factory.hub.local import LocalHub

    if kind == "local":
        h = LocalHub(tmp_path / "hub")
        h.publish("me/theirs", _folder(tmp_path, "theirs", {"weights.bin": "mine", "README.md": "# my model"}), "by hand")
        (h.snapshot("me/theirs")[0] / MANIFEST).unlink()  # made by hand: no factory manifest

        def files(repo):
            return _local_files(h, repo)

        def add_by_hand(repo, name, text):  # a user's own revision between two factory publishes
            import shutil

            old, rev = h.snapshot(repo)
            new = old.parent / ("f" * 40)
            shutil.copytree(old, new)
            (new / name).write_text(text)
            (old.parent.parent / "refs" / "main").write_text(new.name + "\n")
    else:
        h = HfHub(Token(CANARY, "HF_TOKEN", hub.url), hub.url, retry_base_s=0.01)
        hub.state.add_repo("model", "me/theirs", {"weights.bin": b"mine", "README.md": b"# my model"})

        def files(repo):
            return {k: v.decode() for k, v in hub.state.repos[("model", repo)].head()[1].items() if k != ".gitattributes"}

        def add_by_hand(repo, name, text):
            from hub_server import commit

            commit(hub.state.repos[("model", repo)], {name: text.encode()}, "by hand")

    ours = _folder(tmp_path, "ours", {"model.safetensors": "w1", "README.md": "# card", "old.txt": "o"})
    before = files("me/theirs")
    with pytest.raises(UserError, match="was not made by the factory.*into_existing"):
        h.publish("me/theirs", ours, "factory")
    assert files("me/theirs") == before  # refused: nothing written
    assert h.publish("me/theirs", ours, "factory", into_existing=True).created
    after = files("me/theirs")
    assert after["weights.bin"] == "mine" and after["README.md"] == "# card" and MANIFEST in after

    # a repo the factory made: a second publish deletes the factory's stale file, never the user's
    assert h.publish("me/made", ours, "v1").created
    add_by_hand("me/made", "notes.txt", "the user's notes")
    v2 = _folder(tmp_path, "v2", {"model.safetensors": "w2", "README.md": "# card 2"})
    assert h.publish("me/made", v2, "v2").created
    final = files("me/made")
    assert "old.txt" not in final and final["notes.txt"] == "the user's notes" and final["model.safetensors"] == "w2"
    assert not h.publish("me/made", v2, "again").created  # the same content: no new revision

    with pytest.raises(UserError, match="already exists as a public repo"):
        h.publish("me/made", v2, "private now", private=True)


@pytest.mark.parametrize("kind", ["local", "hf"])
def test_a_job_publishing_over_a_foreign_repo_fails_and_writes_nothing(kind, hub, db_url, home, tmp_path, monkeypatch,
                                                                     tiny_base):
    from factory.hub.local import LocalHub
    from factory.queue.worker import Worker

    request = yaml.safe_load(_hub_request(tmp_path, hub_model_id="me/theirs", val_set_size=0).read_text())
    if kind == "local":
        monkeypatch.setenv("FACTORY_HUB", "local")
        local = LocalHub(home / "hub")
        local.publish("org/tiny-base", tiny_base, "copy")
        songs = _folder(tmp_path, "songs", {})
        (songs / "data").mkdir()
        (songs / "data" / "train.jsonl").write_bytes(hub.state.repos[("dataset", "org/songs")].head()[1]["data/train.jsonl"])
        local.publish("org/songs", songs, "copy", "dataset")
        theirs = _folder(tmp_path, "theirs", {"weights.bin": "mine"})
        local.publish("me/theirs", theirs, "by hand")
        (local.snapshot("me/theirs")[0] / "factory_manifest.json").unlink()
        before = _local_files(local, "me/theirs")
    else:
        hub.state.add_repo("model", "me/theirs", {"weights.bin": b"mine"})
        before = dict(hub.state.repos[("model", "me/theirs")].head()[1])
    store = Store(db_url, Limits(0, 0))
    job = store.submit(yaml.safe_dump(request), "alice", "cli")
    Worker(store, "w").run(drain=True)
    assert store.get(job).status == "failed" and "was not made by the factory" in store.get(job).error
    after = _local_files(local, "me/theirs") if kind == "local" else dict(hub.state.repos[("model", "me/theirs")].head()[1])
    assert after == before


# ---- secrets by shape and by source --------------------------------------------------------------

def test_every_known_secret_is_redacted_whatever_its_shape(home, monkeypatch, db_url, capsys):
    from factory.hub.credentials import Token, hf_token
    from factory.base.progress import Console, Event
    from factory.base.redact import redact

    odd = "plainPasswordShapedTokenNoPrefix-42"  # no hf_ prefix: only its source can catch it
    home.mkdir(parents=True, exist_ok=True)
    secrets = home / "secrets.env"
    secrets.write_text(f"HF_TOKEN={odd}\nSOME_WEBHOOK_SECRET=anotherSecretValue77\n")
    secrets.chmod(0o600)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert hf_token().value == odd
    per_user = "perUserOAuthTokenValue-9f8e7d"
    Token(per_user, "OAuth for alice", "https://huggingface.co")  # handled once: redacted from then on
    pasted = fake_token("pastedIntoAMessage")
    text = f"a {odd} b anotherSecretValue77 c {per_user} d {pasted}"
    assert redact(text) == "a *** b *** c *** d hf_***"
    Console().emit(Event("data", f"loading with {odd}"))
    assert odd not in capsys.readouterr().err
    store = Store(db_url, Limits(0, 0))
    job = _insert_job(store, "base_model: x\n")
    store.claim("w", 30)
    store.record(job, "w", "message", {"message": f"token {per_user} and {odd}"})
    store.finish(job, "w", "failed", error=f"boom {odd}")
    dumped = repr([e.payload for e in store.events(job)]) + repr(store.get(job))
    assert odd not in dumped and per_user not in dumped and "***" in dumped
