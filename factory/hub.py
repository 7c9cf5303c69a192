"""The Hub protocol and LocalHub, a folder that behaves like the Hub for models and datasets.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol

from factory import atomic, interrupt
from factory.errors import UserError
from factory.ids import repo_id_problem, revision_problem
from factory.paths import inside

RepoType = Literal["model", "dataset"]
COMMIT_FILE = ".commit.json"  # message and parent of a revision; not part of its content
MANIFEST = "factory_manifest.json"  # the files the factory wrote in this revision: the only ones it may delete
LEGACY_MARK = "factory_request.yaml"  # every model the factory published before manifests carries this file


@dataclass(frozen=True)
class Published:
    repo_id: str
    revision: str
    url: str
    created: bool  # False when the same content was already the current revision


class Hub(Protocol):
    name: str

    def exists(self, repo_id: str, repo_type: RepoType = "model") -> bool: ...

    def snapshot(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None,
                 files: list[str] | None = None) -> tuple[Path, str]:
        """A local folder with the repo's files at revision (default main), and the resolved revision.

        `files` (glob patterns) limits a download to those files where downloading costs something."""
        ...

    def publish(self, repo_id: str, folder: Path, message: str, repo_type: RepoType = "model",
                private: bool = False, into_existing: bool = False,
                before_commit: Callable[[], None] | None = None) -> Published:
        """One new revision with folder's files and a manifest of them. Deletes only files an earlier
        factory manifest lists; refuses a repo the factory did not make unless into_existing, and a
        private publish into a repo that exists as public. Uploads stop at safe points (Ctrl-C, cancel);
        before_commit() is called just before the step that cannot be undone, and may raise to stop it."""
        ...


def manifest_bytes(files: list[str]) -> bytes:
    listed = sorted(f for f in files if f != MANIFEST)
    return (json.dumps({"made_by": "model-factory", "files": listed}, indent=1) + "\n").encode()


def factory_files(existing: set[str], manifest: bytes | None) -> set[str] | None:
    """The files of a repo that the factory wrote, or None when the factory did not make it."""
    if manifest is not None:
        try:
            listed = json.loads(manifest)["files"]
        except (ValueError, KeyError, TypeError):
            return None
        return {f for f in listed if isinstance(f, str)} | {MANIFEST}
    if LEGACY_MARK in existing:  # published by the factory before it wrote manifests: all of it is ours
        return set(existing)
    return None


def plan_publish(repo_id: str, existing: set[str] | None, manifest: bytes | None,
                 existing_private: bool | None, new_files: list[str], private: bool, into_existing: bool) -> list[str]:
    """The files to delete from the repo for this publish, or a UserError saying why it is refused."""
    if existing is None:  # a new repo
        return []
    if private and existing_private is False:
        raise UserError(f"'{repo_id}' already exists as a public repo and publish.private is true: the factory does not "
                        "change a repo's visibility. Make it private on the Hub first, or publish elsewhere")
    content = {f for f in existing if f != ".gitattributes"}
    ours = factory_files(existing, manifest)
    if ours is None:
        if content and not into_existing:
            raise UserError(f"'{repo_id}' exists and was not made by the factory ({len(content)} files of its own); "
                            "nothing was published. Choose another hub_model_id, or set publish: {into_existing: true} "
                            "to add the model's files to it (same-named files are replaced, nothing else is deleted)")
        return []
    return sorted((ours & content) - set(new_files) - {MANIFEST})


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
    name = "local"

    def __init__(self, root: Path):
        self.root = Path(root)

    def _repo(self, repo_id: str, repo_type: RepoType) -> Path:
        if problem := repo_id_problem(repo_id):
            raise UserError(problem)
        return inside(self.root, f"{repo_type}s", *repo_id.split("/"), what="repo id")

    def current(self, repo_id: str, repo_type: RepoType = "model") -> str | None:
        ref = self._repo(repo_id, repo_type) / "refs" / "main"
        return ref.read_text().strip() if ref.is_file() else None

    def exists(self, repo_id: str, repo_type: RepoType = "model") -> bool:
        return self.current(repo_id, repo_type) is not None

    def _revision(self, repo_id: str, repo_type: RepoType, rev: str) -> Path:
        if problem := revision_problem(rev):
            raise UserError(problem)
        return inside(self._repo(repo_id, repo_type), "revisions", rev, what="revision")

    def snapshot(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None,
                 files: list[str] | None = None) -> tuple[Path, str]:
        rev = revision or self.current(repo_id, repo_type)
        if rev is None:
            raise UserError(
                f"{repo_type} '{repo_id}' is not in the local hub ({self.root}); "
                "check the id, run `factory demo` to create the demo repos, or set HF_TOKEN to use huggingface.co"
            )
        path = self._revision(repo_id, repo_type, rev)
        if not path.is_dir():
            raise UserError(f"{repo_type} '{repo_id}' has no revision '{rev}' in the local hub")
        return path, rev

    def publish(self, repo_id: str, folder: Path, message: str, repo_type: RepoType = "model",
                private: bool = False, into_existing: bool = False,
                before_commit: Callable[[], None] | None = None) -> Published:
        import fcntl

        repo = self._repo(repo_id, repo_type)
        (repo / "revisions").mkdir(parents=True, exist_ok=True)
        with open(repo / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
            return self._publish_locked(repo, repo_id, folder, message, repo_type, private, into_existing,
                                        before_commit)

    def _publish_locked(self, repo: Path, repo_id: str, folder: Path, message: str, repo_type: RepoType,
                        private: bool, into_existing: bool, before_commit: Callable[[], None] | None) -> Published:
        parent = self.current(repo_id, repo_type)
        old = self._revision(repo_id, repo_type, parent) if parent else None
        existing = {p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file() and p.name != COMMIT_FILE} if old else None
        commit = old / COMMIT_FILE if old else None
        was_private = bool(json.loads(commit.read_text()).get("private")) if commit and commit.is_file() else None
        manifest = (old / MANIFEST).read_bytes() if old and (old / MANIFEST).is_file() else None
        new_files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        deletes = plan_publish(repo_id, existing, manifest, was_private, new_files, private, into_existing)
        for stale in repo.glob(".incoming-*"):  # left by a crashed publish (a live one would hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=repo, prefix=".incoming-"))
        with interrupt.partial(tmp):
            try:
                if old is not None:  # the new revision starts from the old one: files we did not write stay
                    shutil.copytree(old, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(COMMIT_FILE),
                                    copy_function=_copy)
                    for rel in deletes:
                        (tmp / rel).unlink(missing_ok=True)
                shutil.copytree(folder, tmp, dirs_exist_ok=True, copy_function=_copy)
                (tmp / MANIFEST).write_bytes(manifest_bytes(new_files))
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


def model_folder(ref: str, hub: Hub, revision: str | None = None, files: list[str] | None = None) -> tuple[Path, str | None]:
    """A model folder on disk wins over a same-named Hub id; else the hub's snapshot (and its revision).

    A local .gguf file is dequantised once into $FACTORY_HOME/cache/gguf/<its sha256>."""
    local = Path(ref).expanduser()
    if (local / "config.json").is_file():
        return local, None
    if local.suffix.lower() == ".gguf" and local.is_file():
        from factory.gguf_import import cached_folder
        from factory.home import factory_home

        return cached_folder(local, factory_home() / "cache" / "gguf"), None
    if not hub.exists(ref):
        where = f"the {hub.name} hub ({hub.root})" if hasattr(hub, "root") else hub.name
        raise UserError(f"model '{ref}' is not in {where} nor a model folder on this machine; check the id, "
                        "or run `factory demo` once to create the demo base model")
    return hub.snapshot(ref, "model", revision, files)


def default_hub(endpoint: str | None = None) -> Hub:
    """The real Hub when the operator configured a token for the endpoint, else the local hub.

    The endpoint is the request's hub_endpoint when the operator allows it (HF_ENDPOINT or
    FACTORY_HUB_ENDPOINTS), else HF_ENDPOINT, else https://huggingface.co. FACTORY_HUB=local forces the
    local hub even with a token."""
    import os

    from factory.credentials import check_endpoint, hf_token
    from factory.home import hub_root

    if os.environ.get("FACTORY_HUB", "").lower() != "local":
        endpoint = check_endpoint(endpoint)  # before any connection: a request never picks where a token goes
        token = hf_token(endpoint)
        if token is not None:
            from factory.hf_hub import HfHub

            return HfHub(token, endpoint)
    return LocalHub(hub_root())
