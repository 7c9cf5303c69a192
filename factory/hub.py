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
from factory.ids import looks_like_repo_id, repo_id_problem, revision_problem
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
                before_commit: Callable[[], None] | None = None, identity: str | None = None,
                writers: list[str] | tuple[str, ...] = ()) -> Published:
        """One new revision with folder's files and a manifest of them. Deletes only files an earlier
        factory manifest lists; refuses a repo the factory did not make unless into_existing, a private
        publish into a repo that exists as public, and a repo another identity published through a front
        door (identity: the stranger publishing; None: the operator). Uploads stop at safe points (Ctrl-C,
        cancel); before_commit() is called just before the step that cannot be undone, and may raise."""
        ...


def manifest_bytes(files: list[str], owner: str | None = None, writers: list[str] | tuple[str, ...] = ()) -> bytes:
    """The manifest: the files the factory wrote; owner, the identity that published the repo first through a
    front door (none: the operator); writers, the other identities the owner lets publish new revisions."""
    data: dict = {"made_by": "model-factory", "files": sorted(f for f in files if f != MANIFEST)}
    if owner:
        data["owner"] = owner
    if writers:
        data["writers"] = sorted(set(writers))
    return (json.dumps(data, indent=1) + "\n").encode()


def _manifest(manifest: bytes | None) -> dict | None:
    try:
        data = json.loads(manifest) if manifest is not None else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def factory_files(existing: set[str], manifest: bytes | None) -> set[str] | None:
    """The files of a repo that the factory wrote, or None when the factory did not make it."""
    if manifest is not None:
        listed = (_manifest(manifest) or {}).get("files")
        if not isinstance(listed, list):
            return None
        return {f for f in listed if isinstance(f, str)} | {MANIFEST}
    if LEGACY_MARK in existing:  # published by the factory before it wrote manifests: all of it is ours
        return set(existing)
    return None


def owner_of(manifest: bytes | None) -> tuple[str | None, list[str]]:
    """(owner, writers) a manifest records; (None, []) for the operator's repos and older manifests."""
    data = _manifest(manifest) or {}
    owner, writers = data.get("owner"), data.get("writers")
    return (owner if isinstance(owner, str) else None,
            [w for w in writers if isinstance(w, str)] if isinstance(writers, list) else [])


def own_namespace(identity: str, repo_id: str) -> bool:
    """A Hub user's own namespace is theirs whatever a manifest says (hf:alice owns alice/...)."""
    return identity == f"hf:{repo_id.split('/')[0]}"


@dataclass(frozen=True)
class Plan:
    deletes: list[str]  # files of the repo to delete: only those an earlier factory manifest lists
    manifest: bytes     # the new revision's manifest


def plan_publish(repo_id: str, existing: set[str] | None, manifest: bytes | None,
                 existing_private: bool | None, new_files: list[str], private: bool, into_existing: bool,
                 identity: str | None = None, writers: list[str] | tuple[str, ...] = ()) -> Plan:
    """What this publish deletes and the manifest it writes, or a UserError saying why it is refused.

    identity: who publishes through a front door (None: the operator, who may publish anywhere the token can).
    A repo published through a front door belongs to that identity: another one needs its grant (the owner's
    `publish.writers`), or the namespace must be its own."""
    if existing is None:  # a new repo: the publisher owns it
        return Plan([], manifest_bytes(new_files, identity, writers))
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
        return Plan([], manifest_bytes(new_files, identity, writers))
    owner, granted = owner_of(manifest)
    if identity is not None and identity != owner and identity not in granted and not own_namespace(identity, repo_id):
        raise UserError(f"'{repo_id}' was published through the factory by {owner or 'the operator'}; a new revision "
                        f"from {identity} needs their grant (publish: {{writers: [{identity}]}} in a request of theirs). "
                        "Nothing was published; choose another hub_model_id")
    is_owner = identity is not None and (identity == owner or own_namespace(identity, repo_id))
    grants = writers if is_owner or (identity is None and writers) else granted  # only the owner changes them
    return Plan(sorted((ours & content) - set(new_files) - {MANIFEST}), manifest_bytes(new_files, owner or identity, grants))


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
            where = f" ({self.root})" if self.reader is None else ""  # a stranger is not told where it lives
            raise UserError(
                f"{repo_type} '{repo_id}' is not in the local hub{where}; "
                "check the id, run `factory demo` to create the demo repos, or set HF_TOKEN to use huggingface.co"
            )
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


def model_folder(ref: str, hub: Hub, revision: str | None = None, files: list[str] | None = None) -> tuple[Path, str | None]:
    """A model folder on disk wins over a same-named Hub id; else the hub's snapshot (and its revision).

    A local .gguf file is dequantised once into $FACTORY_HOME/cache/gguf/<its sha256>. A hub that reads for a
    stranger (its `reader` is set) never resolves a folder on disk: the id is a repo id, whatever lies here."""
    local = Path(ref).expanduser()
    if getattr(hub, "reader", None) is not None:
        if not looks_like_repo_id(ref):
            raise UserError(f"'{ref}' is not a Hub repo id (org/name)")
    elif (local / "config.json").is_file():
        return local, None
    elif local.suffix.lower() == ".gguf" and local.is_file():
        from factory.gguf_import import cached_folder
        from factory.home import factory_home

        return cached_folder(local, factory_home() / "cache" / "gguf"), None
    if not hub.exists(ref):
        where = f"the {hub.name} hub ({hub.root})" if getattr(hub, "root", None) and not hub.reader else hub.name
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


def hub_for(identity: str, token=None, endpoint: str | None = None) -> Hub:
    """The hub as a stranger sees it, for every read made on their behalf (preview, validation, chat, their
    job): with their own Hub token (a credentials.Token) when they signed in, else public repos only; never
    the operator's token, never a folder on disk. Offline (the local hub), private repos are their owner's."""
    import os

    from factory.credentials import check_endpoint, hf_token
    from factory.home import hub_root

    if os.environ.get("FACTORY_HUB", "").lower() != "local":
        endpoint = check_endpoint(endpoint)
        if token is not None or hf_token(endpoint) is not None:  # the operator works against the real Hub
            from factory.hf_hub import HfHub

            return HfHub(token, endpoint, reader=identity)  # no token: anonymous, public repos only
    return LocalHub(hub_root(), reader=identity)


def stranger_job_hub(identity: str, token=None, endpoint: str | None = None) -> "JobHub":
    """The hub of a stranger's job: reads as the stranger; publishes with their own token when they signed in,
    else through the operator's hub (into the namespace the door allowed, checked again at publish)."""
    reads = hub_for(identity, token, endpoint)
    publishes = reads if token is not None and not isinstance(reads, LocalHub) else default_hub(endpoint)
    return JobHub(reads, publishes)


class JobHub:
    """A stranger's job: reads as the stranger (hub_for), publishes through `publishes` (their own token's hub,
    or the operator's for the namespaces the operator publishes strangers' models into)."""

    def __init__(self, reads: Hub, publishes: Hub):
        self.reads, self.publishes = reads, publishes
        self.name = reads.name
        self.reader = getattr(reads, "reader", None)  # who the reads are for (model_folder: no local folders)

    def exists(self, repo_id: str, repo_type: RepoType = "model") -> bool:
        return self.reads.exists(repo_id, repo_type)

    def snapshot(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None,
                 files: list[str] | None = None) -> tuple[Path, str]:
        return self.reads.snapshot(repo_id, repo_type, revision, files)

    @property
    def repo_bytes(self):
        return getattr(self.reads, "repo_bytes", None)  # None: the size is summed from a snapshot instead

    def publish(self, *args, **kwargs) -> Published:
        return self.publishes.publish(*args, **kwargs)
