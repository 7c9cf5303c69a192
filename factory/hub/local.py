"""LocalHub, a folder that behaves like the Hub for models and datasets (the embedded default).

Layout: <root>/<models|datasets>/<org>/<name>/revisions/<sha>/... and refs/main naming the
current revision. A publish writes a hidden temp folder, renames it into revisions/, then swaps
refs/main atomically: a crash at any point leaves the previous revision current and nothing
half-written visible. Publishers of one repo take turns on an exclusive lock (several workers may
publish the same repo at once): each new revision's parent is the one before it, none is lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from factory.base import atomic, interrupt
from factory.base.errors import UserError
from factory.base.ids import repo_id_problem, revision_problem
from factory.base.paths import inside
from factory.hub.protocol import (COMMIT_FILE, MANIFEST, Published, RepoType, own_namespace, owner_of,
                                  plan_publish)


def tree_digest(folder: Path, parent: str | None) -> str:
    """A 40-hex revision id from the parent and every file's path and bytes (same content, same id)."""
    h = hashlib.sha1((parent or "").encode())
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != COMMIT_FILE:
            h.update(p.relative_to(folder).as_posix().encode() + b"\0")
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


class LocalHub:
    """reader: the identity reads are made for (a stranger sees public repos and their own private ones, and
    never a folder on disk by its path); None: the operator, who sees everything."""
    name = "local"

    def __init__(self, root: Path, reader: str | None = None):
        self.root = Path(root)
        self.reader = reader

    def _repo(self, repo_id: str, repo_type: RepoType) -> Path:
        if problem := repo_id_problem(repo_id):
            raise UserError(problem)
        return inside(self.root, f"{repo_type}s", *repo_id.split("/"), what="repo id")

    def current(self, repo_id: str, repo_type: RepoType = "model") -> str | None:
        ref = self._repo(repo_id, repo_type) / "refs" / "main"
        return ref.read_text().strip() if ref.is_file() else None

    def exists(self, repo_id: str, repo_type: RepoType = "model") -> bool:
        rev = self.current(repo_id, repo_type)
        return rev is not None and self._readable(repo_id, repo_type, rev)

    def _readable(self, repo_id: str, repo_type: RepoType, rev: str) -> bool:
        """A private revision is its owner's (and the operator's) alone, as on the Hub."""
        if self.reader is None:
            return True
        folder = self._revision(repo_id, repo_type, rev)
        commit, manifest = folder / COMMIT_FILE, folder / MANIFEST
        private = commit.is_file() and bool(json.loads(commit.read_text()).get("private"))
        owner, _ = owner_of(manifest.read_bytes() if manifest.is_file() else None)
        return not private or self.reader == owner or own_namespace(self.reader, repo_id)

    def _revision(self, repo_id: str, repo_type: RepoType, rev: str) -> Path:
        if problem := revision_problem(rev):
            raise UserError(problem)
        return inside(self._repo(repo_id, repo_type), "revisions", rev, what="revision")

    def snapshot(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None,
                 files: list[str] | None = None) -> tuple[Path, str]:
        rev = revision or self.current(repo_id, repo_type)
        if rev is None or not self._readable(repo_id, repo_type, rev):  # private: as if it did not exist
            if self.reader is None:  # the operator, at a terminal
                raise UserError(f"{repo_type} '{repo_id}' is not in the local hub ({self.root}); check the id, run "
                                "`factory demo` to create the demo repos, or set HF_TOKEN to use huggingface.co")
            # a stranger at a front door: not told where it lives, nor handed the operator's commands
            raise UserError(f"{repo_type} '{repo_id}' is not in this factory's hub (it runs offline: only its own "
                            f"repos can be named); check the {repo_type} id")
        path = self._revision(repo_id, repo_type, rev)
        if not path.is_dir():
            raise UserError(f"{repo_type} '{repo_id}' has no revision '{rev}' in the local hub")
        return path, rev

    def publish(self, repo_id: str, folder: Path, message: str, repo_type: RepoType = "model",
                private: bool = False, into_existing: bool = False,
                before_commit: Callable[[], None] | None = None, identity: str | None = None,
                writers: list[str] | tuple[str, ...] = ()) -> Published:
        import fcntl

        repo = self._repo(repo_id, repo_type)
        (repo / "revisions").mkdir(parents=True, exist_ok=True)
        with open(repo / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
            return self._publish_locked(repo, repo_id, folder, message, repo_type, private, into_existing,
                                        before_commit, identity, writers)

    def _publish_locked(self, repo: Path, repo_id: str, folder: Path, message: str, repo_type: RepoType,
                        private: bool, into_existing: bool, before_commit: Callable[[], None] | None,
                        identity: str | None, writers) -> Published:
        parent = self.current(repo_id, repo_type)
        old = self._revision(repo_id, repo_type, parent) if parent else None
        existing = {p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file() and p.name != COMMIT_FILE} if old else None
        commit = old / COMMIT_FILE if old else None
        was_private = bool(json.loads(commit.read_text()).get("private")) if commit and commit.is_file() else None
        manifest = (old / MANIFEST).read_bytes() if old and (old / MANIFEST).is_file() else None
        new_files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        plan = plan_publish(repo_id, existing, manifest, was_private, new_files, private, into_existing, identity,
                            writers)
        for stale in repo.glob(".incoming-*"):  # left by a crashed publish (a live one would hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=repo, prefix=".incoming-"))
        with interrupt.partial(tmp):
            try:
                if old is not None:  # the new revision starts from the old one: files we did not write stay
                    shutil.copytree(old, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(COMMIT_FILE),
                                    copy_function=_copy)
                    for rel in plan.deletes:
                        (tmp / rel).unlink(missing_ok=True)
                shutil.copytree(folder, tmp, dirs_exist_ok=True, copy_function=_copy)
                (tmp / MANIFEST).write_bytes(plan.manifest)
                if old is not None and tree_digest(tmp, None) == tree_digest(old, None):
                    shutil.rmtree(tmp, ignore_errors=True)
                    if before_commit is not None:
                        before_commit()  # the same files are published: as final as a new revision
                    return Published(repo_id, parent, self.url(repo_id, repo_type), created=False)
                atomic.write_json(tmp / COMMIT_FILE, {"message": message, "parent": parent,
                                                      "private": bool(was_private) if old else private})
                atomic.fsync_tree(tmp)
                rev = tree_digest(tmp, parent)
                if before_commit is not None:
                    before_commit()
                dest = repo / "revisions" / rev
                if dest.is_dir():  # written by a publish stopped before it moved refs/main: the same content
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    os.replace(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        atomic.write_text(repo / "refs" / "main", rev + "\n")
        return Published(repo_id, rev, self.url(repo_id, repo_type), created=True)

    def url(self, repo_id: str, repo_type: RepoType = "model") -> str:
        return (self.root / f"{repo_type}s" / repo_id).as_uri()


def _copy(src, dst):
    """shutil.copy2 with a safe point before each file: a long copy stops when asked."""
    interrupt.safe_point()
    return shutil.copy2(src, dst)
