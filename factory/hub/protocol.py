"""The Hub protocol every hub implements, and what a publish writes and may do: its manifest, its plan.

A repo's manifest lists the files the factory wrote (the only ones it ever deletes), the identity that
published it through a front door (its owner) and the identities the owner lets publish new revisions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol

from factory.base.errors import UserError

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
