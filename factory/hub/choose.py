"""Which hub a read or a publish goes through: the operator's (a token means the real Hub, none the local
hub), a stranger's view (their own token or none), a stranger's job (reads as them, publishes through
the operator), and a model reference resolved to a folder.
"""

from __future__ import annotations

from pathlib import Path

from factory.base.errors import UserError
from factory.base.ids import looks_like_repo_id
from factory.hub.local import LocalHub
from factory.hub.protocol import Hub, Published, RepoType


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
        from factory.hub.gguf_import import cached_folder
        from factory.base.home import factory_home

        return cached_folder(local, factory_home() / "cache" / "gguf"), None
    if not hub.exists(ref):
        where = f"the {hub.name} hub ({hub.root})" if getattr(hub, "root", None) and not hub.reader else hub.name
        if getattr(hub, "reader", None):  # a stranger at a front door: the id is all they can change
            raise UserError(f"model '{ref}' is not in {where}; check the base model id")
        raise UserError(f"model '{ref}' is not in {where} nor a model folder on this machine; check the id, "
                        "or run `factory demo` once to create the demo base model")
    return hub.snapshot(ref, "model", revision, files)


def default_hub(endpoint: str | None = None) -> Hub:
    """The real Hub when the operator configured a token for the endpoint, else the local hub.

    The endpoint is the request's hub_endpoint when the operator allows it (HF_ENDPOINT or
    FACTORY_HUB_ENDPOINTS), else HF_ENDPOINT, else https://huggingface.co. FACTORY_HUB=local forces the
    local hub even with a token."""
    import os

    from factory.hub.credentials import check_endpoint, hf_token
    from factory.base.home import hub_root

    if os.environ.get("FACTORY_HUB", "").lower() != "local":
        endpoint = check_endpoint(endpoint)  # before any connection: a request never picks where a token goes
        token = hf_token(endpoint)
        if token is not None:
            from factory.hub.hf_hub import HfHub

            return HfHub(token, endpoint)
    return LocalHub(hub_root())


def hub_for(identity: str, token=None, endpoint: str | None = None) -> Hub:
    """The hub as a stranger sees it, for every read made on their behalf (preview, validation, chat, their
    job): with their own Hub token (a credentials.Token) when they signed in, else public repos only; never
    the operator's token, never a folder on disk. Offline (the local hub), private repos are their owner's."""
    import os

    from factory.hub.credentials import check_endpoint, hf_token
    from factory.base.home import hub_root

    if os.environ.get("FACTORY_HUB", "").lower() != "local":
        endpoint = check_endpoint(endpoint)
        if token is not None or hf_token(endpoint) is not None:  # the operator works against the real Hub
            from factory.hub.hf_hub import HfHub

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
