"""HfHub: the Hub protocol over huggingface_hub (huggingface.co or any Hub-compatible endpoint).

In: snapshot_download of only the files a finetune needs (weights, config, tokenizer, chat
template, card; or a dataset repo's data files), pinned to the resolved commit. Out: create_repo
when the repo is new, then one create_commit with the folder's files, a manifest of them, and
deletions of only those files an earlier factory manifest lists (a repo the factory did not make is
refused unless publish.into_existing); nothing is committed when the repo already holds exactly
these files. Errors become one message naming the repo and what is missing; 5xx answers and broken
connections are retried with backoff and then raised as TransientError (a queued job is retried).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from factory.base import interrupt
from factory.hub.credentials import Token, allowed_namespace, normalise_endpoint
from factory.base.errors import TransientError, UserError
from factory.base.filehash import sha256_of
from factory.hub.protocol import MANIFEST, Published, RepoType, plan_publish
from factory.base.ids import repo_id_problem, revision_problem

MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.jinja", "*.txt", "README.md"]
DATASET_FILES = ["*.parquet", "*.json", "*.jsonl", "*.csv", "README.md"]
RETRIES = 4


def _git_blob_sha(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class HfHub:
    """token None: anonymous (public repos only; huggingface_hub is told to send no token at all, not even
    a saved login). reader: the stranger the reads are made for (None: the operator)."""

    def __init__(self, token: Token | None, endpoint: str = "https://huggingface.co", retry_base_s: float = 1.0,
                 reader: str | None = None):
        from huggingface_hub import HfApi

        self.token, self.endpoint, self.reader = token, normalise_endpoint(endpoint), reader
        if token is not None and token.endpoint != self.endpoint:  # sent only where the operator configured it
            raise UserError(f"the token from {token.source} belongs to {token.endpoint}, not {self.endpoint}; "
                            "it is not sent there")
        self.secret = token.value if token is not None else False  # False: no token, whatever is saved locally
        self.source = token.source if token is not None else "no token (public repos only)"
        self.api = HfApi(endpoint=self.endpoint, token=self.secret)
        self.name = f"{urlparse(self.endpoint).netloc} ({'token from ' + token.source if token else 'anonymous'})"
        self.retry_base_s = retry_base_s

    # ---- errors and retries ----------------------------------------------------------------------

    def _whose(self) -> str:
        return f"the token from {self.token.source}" if self.token is not None else "an anonymous reader"

    def _explain(self, exc: Exception, repo_id: str, repo_type: RepoType, revision: str | None = None) -> Exception:
        from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, RepositoryNotFoundError,
                                            RevisionNotFoundError)

        where = f"{repo_type} '{repo_id}' on {self.endpoint}"
        if isinstance(exc, GatedRepoError):
            return UserError(f"{where} is gated: accept its terms at {self.endpoint}/{repo_id} with the account of "
                             f"{self._whose()}, then retry")
        if isinstance(exc, RevisionNotFoundError):
            return UserError(f"{where} has no revision '{revision}'; check revision_of_model")
        if isinstance(exc, RepositoryNotFoundError):
            return UserError(f"{where} was not found, or it is private and {self._whose()} cannot "
                             "read it: check the id and the token's access")
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            return UserError(f"{self._whose()} was refused by {self.endpoint} (401): it is invalid "
                             "or expired; make a new one at https://huggingface.co/settings/tokens")
        if status == 403:
            return UserError(f"{self._whose()} may not do this on {where} (403): use a token with "
                             "write access to that namespace")
        if status is not None and status >= 500 or self._is_connection_error(exc):
            return TransientError(f"{where}: the Hub did not answer ({status or type(exc).__name__}); try again later")
        if isinstance(exc, HfHubHTTPError):
            return UserError(f"{where}: the Hub answered {status}: {str(exc).splitlines()[0]}")
        return exc

    @staticmethod
    def _is_connection_error(exc: Exception) -> bool:
        """A broken or refused connection, from whichever httpx huggingface_hub uses (2.4: httpx2)."""
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        return any(c.__name__ in ("TransportError", "NetworkError", "RemoteProtocolError", "TimeoutException")
                   and c.__module__.split(".")[0].startswith("httpx") for c in type(exc).__mro__)

    def _call(self, fn, repo_id: str, repo_type: RepoType, revision: str | None = None):
        """fn() with retries on 5xx and broken connections (exponential backoff), errors explained."""
        for attempt in range(RETRIES):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - every failure is explained or re-raised
                explained = self._explain(exc, repo_id, repo_type, revision)
                if not isinstance(explained, TransientError) or attempt == RETRIES - 1:
                    raise explained from None
                time.sleep(self.retry_base_s * 2 ** attempt)
        raise AssertionError("unreachable")

    # ---- the Hub protocol ------------------------------------------------------------------------

    def exists(self, repo_id: str, repo_type: RepoType = "model") -> bool:
        return self._call(lambda: self.api.repo_exists(repo_id, repo_type=repo_type), repo_id, repo_type)

    def snapshot(self, repo_id: str, repo_type: RepoType = "model", revision: str | None = None,
                 files: list[str] | None = None) -> tuple[Path, str]:
        from huggingface_hub import snapshot_download

        if problem := repo_id_problem(repo_id) or (revision and revision_problem(revision)):
            raise UserError(problem)
        patterns = files or (MODEL_FILES if repo_type == "model" else DATASET_FILES)
        path = self._call(lambda: snapshot_download(
            repo_id, repo_type=repo_type, revision=revision, allow_patterns=patterns, token=self.secret,
            endpoint=self.endpoint), repo_id, repo_type, revision)
        return Path(path), Path(path).name  # the cache's snapshot folder is named by the commit id

    def publish(self, repo_id: str, folder: Path, message: str, repo_type: RepoType = "model",
                private: bool = False, into_existing: bool = False,
                before_commit: Callable[[], None] | None = None, identity: str | None = None,
                writers: list[str] | tuple[str, ...] = ()) -> Published:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        if problem := repo_id_problem(repo_id) or allowed_namespace(repo_id):
            raise UserError(problem)
        url = f"{self.endpoint}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
        info = self._info_or_none(repo_id, repo_type)
        remote = self._files(repo_id, repo_type, info.sha) if info is not None and info.sha else {}
        manifest = self._download(repo_id, repo_type, info.sha, MANIFEST) if MANIFEST in remote else None
        local = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
        plan = plan_publish(repo_id, set(remote) if info is not None else None, manifest,
                            getattr(info, "private", None), list(local), private, into_existing, identity, writers)
        deletes, new_manifest = plan.deletes, plan.manifest
        if info is None:
            self._call(lambda: self.api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True),
                       repo_id, repo_type)
        elif not deletes and manifest == new_manifest and self._same(remote, local):
            if before_commit is not None:
                before_commit()  # the same files are published: as final as a new commit
            return Published(repo_id, info.sha, url, created=False)
        adds = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(p)) for path, p in sorted(local.items())]
        for op in adds:  # large files go up one by one, a safe point between two; the commit then only names them
            interrupt.safe_point()
            self._call(lambda op=op: self.api.preupload_lfs_files(repo_id, additions=[op], repo_type=repo_type),
                       repo_id, repo_type)
        ops = [*adds, CommitOperationAdd(path_in_repo=MANIFEST, path_or_fileobj=new_manifest)]
        ops += [CommitOperationDelete(path_in_repo=path) for path in deletes]
        if before_commit is not None:
            before_commit()
        done = self._call(lambda: self.api.create_commit(repo_id=repo_id, repo_type=repo_type, operations=ops,
                                                         commit_message=message), repo_id, repo_type)
        return Published(repo_id, done.oid, url, created=True)

    def repo_bytes(self, repo_id: str, repo_type: RepoType = "model") -> int:
        """The size of the repo's files at main, from the Hub's metadata (nothing is downloaded)."""
        info = self._call(lambda: self.api.repo_info(repo_id, repo_type=repo_type, files_metadata=True),
                          repo_id, repo_type)
        return sum(s.size or 0 for s in info.siblings or [])

    def _info_or_none(self, repo_id: str, repo_type: RepoType):
        """The repo's info, or None when it does not exist (yet)."""
        from huggingface_hub.errors import RepositoryNotFoundError

        def fetch():
            try:
                return self.api.repo_info(repo_id, repo_type=repo_type)
            except RepositoryNotFoundError:
                return None

        return self._call(fetch, repo_id, repo_type)

    def _files(self, repo_id: str, repo_type: RepoType, revision: str) -> dict:
        """path -> RepoFile of every file of the repo at revision."""
        from huggingface_hub.hf_api import RepoFile

        return {f.path: f for f in self._call(lambda: list(self.api.list_repo_tree(
            repo_id, repo_type=repo_type, revision=revision, recursive=True)), repo_id, repo_type)
            if isinstance(f, RepoFile)}

    def _download(self, repo_id: str, repo_type: RepoType, revision: str, filename: str) -> bytes:
        from huggingface_hub import hf_hub_download

        path = self._call(lambda: hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision,
                                                  token=self.secret, endpoint=self.endpoint), repo_id, repo_type)
        return Path(path).read_bytes()

    @staticmethod
    def _same(remote: dict, local: dict[str, Path]) -> bool:
        """Every local file is in the repo with the same content (git blob sha, or LFS sha256)."""
        for path, p in local.items():
            f = remote.get(path)
            if f is None:
                return False
            if not ((f.lfs.sha256 == sha256_of(p)) if f.lfs else (f.blob_id == _git_blob_sha(p))):
                return False
        return True
