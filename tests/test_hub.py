"""LocalHub: each publish an atomic new revision; a crash mid-publish leaves the previous one intact."""

from __future__ import annotations

import pytest

from factory.base import atomic
from factory.base.errors import UserError
from factory.hub.local import LocalHub


def folder(tmp_path, name, content):
    d = tmp_path / name
    d.mkdir()
    (d / "model.safetensors").write_bytes(content)
    (d / "README.md").write_text("card")
    return d


def test_publish_revisions_and_idempotence(tmp_path):
    hub = LocalHub(tmp_path / "hub")
    first = hub.publish("org/m", folder(tmp_path, "a", b"1" * 1000), "one")
    assert first.created and len(first.revision) == 40
    again = hub.publish("org/m", folder(tmp_path, "a2", b"1" * 1000), "one again")
    assert not again.created and again.revision == first.revision
    second = hub.publish("org/m", folder(tmp_path, "b", b"2" * 1000), "two")
    assert second.created and second.revision != first.revision
    path, rev = hub.snapshot("org/m")
    assert rev == second.revision and (path / "model.safetensors").read_bytes() == b"2" * 1000
    old, _ = hub.snapshot("org/m", revision=first.revision)
    assert (old / "model.safetensors").read_bytes() == b"1" * 1000


@pytest.mark.parametrize("crash_in", ["fsync_tree", "write_text"])
def test_crash_mid_publish_leaves_previous_revision(tmp_path, monkeypatch, crash_in):
    hub = LocalHub(tmp_path / "hub")
    first = hub.publish("org/m", folder(tmp_path, "a", b"old"), "one")

    def boom(*a, **k):
        raise OSError("disk died")

    monkeypatch.setattr(atomic, crash_in, boom)
    with pytest.raises(OSError):
        hub.publish("org/m", folder(tmp_path, "b", b"new"), "two")
    monkeypatch.undo()
    path, rev = hub.snapshot("org/m")
    assert rev == first.revision and (path / "model.safetensors").read_bytes() == b"old"
    repo = tmp_path / "hub" / "models" / "org" / "m"
    assert not list(repo.glob(".incoming-*"))
    # the next publish works and becomes current
    third = hub.publish("org/m", folder(tmp_path, "c", b"newer"), "three")
    assert hub.snapshot("org/m")[1] == third.revision


def test_bad_ids_and_missing_repos(tmp_path):
    hub = LocalHub(tmp_path / "hub")
    for bad in ("../x", "/etc", "org/../../etc"):
        with pytest.raises(UserError):
            hub.publish(bad, tmp_path, "x")
    with pytest.raises(UserError, match="not in the local hub"):
        hub.snapshot("org/nothing")


PUBLISHER = """
import sys, time
from pathlib import Path
from factory.hub.local import LocalHub
root, name, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
while time.time() < start:  # both processes begin together
    time.sleep(0.001)
for i in range(6):
    d = root / f"src-{name}-{i}"
    d.mkdir()
    (d / "model.safetensors").write_bytes(f"{name}-{i}".encode() * 1000)
    LocalHub(root / "hub").publish("org/shared", d, f"{name} {i}")
"""


def test_two_processes_publishing_one_repo_lose_nothing(tmp_path):
    """Each publish lands as a revision whose parent is the one before: 12 publishes, a chain of 12."""
    import json
    import subprocess
    import sys
    import time

    start = str(time.time() + 2)
    procs = [subprocess.Popen([sys.executable, "-c", PUBLISHER, str(tmp_path), name, start]) for name in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    hub = LocalHub(tmp_path / "hub")
    repo = tmp_path / "hub" / "models" / "org" / "shared"
    chain, rev = [], hub.current("org/shared")
    while rev:
        chain.append(json.loads((repo / "revisions" / rev / ".commit.json").read_text())["message"])
        rev = json.loads((repo / "revisions" / rev / ".commit.json").read_text())["parent"]
    assert sorted(chain) == sorted(f"{n} {i}" for n in "ab" for i in range(6)), chain
    assert len(list((repo / "revisions").iterdir())) == 12
    assert not list(repo.glob(".incoming-*"))
