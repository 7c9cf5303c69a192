"""The Hub protocol and LocalHub, a folder that behaves like the Hub for models and datasets.

Layout: <root>/<models|datasets>/<org>/<name>/revisions/<sha>/... and refs/main naming the
current revision. A publish writes a hidden temp folder, renames it into revisions/, then swaps
refs/main atomically: a crash at any point leaves the previous revision current and nothing
half-written visible.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from factory import atomic
from factory.errors import UserError
from factory.ids import repo_id_problem

RepoType = Literal["model", "dataset"]
COMMIT_FILE = ".commit.json"  # message and parent of a revision; not part of its content


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
                private: bool = False) -> Published: ...


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
        return self.root / f"{repo_type}s" / repo_id

    def current(self, repo_id: str, repo_type: RepoType = "model") -> str | None:
        ref = self._repo(repo_id, repo_type) / "refs" / "main"
        return ref.read_text().strip() if ref.is_file() else None

    def exists(self, repo_id: str, repo_type: RepoType = "model") -> bool:
        return self.current(repo_id, repo_type) is not None

    def snapshot(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None,
                 files: list[str] | None = None) -> tuple[Path, str]:
        rev = revision or self.current(repo_id, repo_type)
        if rev is None:
            raise UserError(
                f"{repo_type} '{repo_id}' is not in the local hub ({self.root}); "
                "check the id, run `factory demo` to create the demo repos, or set HF_TOKEN to use huggingface.co"
            )
        path = self._repo(repo_id, repo_type) / "revisions" / rev
        if not path.is_dir():
            raise UserError(f"{repo_type} '{repo_id}' has no revision '{rev}' in the local hub")
        return path, rev

    def publish(self, repo_id: str, folder: Path, message: str, repo_type: RepoType = "model",
                private: bool = False) -> Published:
        repo = self._repo(repo_id, repo_type)
        parent = self.current(repo_id, repo_type)
        if parent is not None and tree_digest(folder, None) == tree_digest(repo / "revisions" / parent, None):
            return Published(repo_id, parent, self.url(repo_id, repo_type), created=False)
        (repo / "revisions").mkdir(parents=True, exist_ok=True)
        for stale in repo.glob(".incoming-*"):  # left by a crashed publish; never visible
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=repo, prefix=".incoming-"))
        try:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            atomic.write_json(tmp / COMMIT_FILE, {"message": message, "parent": parent, "private": private})
            atomic.fsync_tree(tmp)
            rev = tree_digest(tmp, parent)
            os.replace(tmp, repo / "revisions" / rev)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic.write_text(repo / "refs" / "main", rev + "\n")
        return Published(repo_id, rev, self.url(repo_id, repo_type), created=True)

    def url(self, repo_id: str, repo_type: RepoType = "model") -> str:
        return (self.root / f"{repo_type}s" / repo_id).as_uri()


def model_folder(ref: str, hub: Hub, revision: str | None = None, files: list[str] | None = None) -> tuple[Path, str | None]:
    """A model folder on disk wins over a same-named Hub id; else the hub's snapshot (and its revision)."""
    local = Path(ref).expanduser()
    if (local / "config.json").is_file():
        return local, None
    if not hub.exists(ref):
        where = f"the {hub.name} hub ({hub.root})" if hasattr(hub, "root") else hub.name
        raise UserError(f"model '{ref}' is not in {where} nor a model folder on this machine; check the id, "
                        "or run `factory demo` once to create the demo base model")
    return hub.snapshot(ref, "model", revision, files)


def default_hub(endpoint: str | None = None) -> Hub:
    """The real Hub when a token is found (HF_TOKEN, the secrets file, or `hf auth login`), else the local hub.

    FACTORY_HUB=local forces the local hub even with a token; the endpoint is the request's
    hub_endpoint, else HF_ENDPOINT, else https://huggingface.co."""
    import os

    from factory.home import hub_root

    if os.environ.get("FACTORY_HUB", "").lower() != "local":
        from factory.credentials import hf_token

        token = hf_token()
        if token is not None:
            from factory.hf_hub import HfHub

            return HfHub(token, endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return LocalHub(hub_root())
