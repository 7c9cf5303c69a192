"""What a job on Hugging Face Jobs needs from the worker's disk: carried with it, or refused at submit.

The remote run starts in a clean image: nothing of this machine's $FACTORY_HOME or data roots is there. So
every local file a request may name is decided per kind when the request is submitted (`check`), never
queued to fail on the remote side:

- carried: held-out eval files the factory wrote ($FACTORY_HOME/evals: the shipped tasks and NAME=PATH
  benchmarks that name them), other NAME=PATH benchmark files, and local data files. Small ones together
  (INLINE_BYTES) travel in the job's environment; larger ones are uploaded once, by content hash, to the
  operator's private dataset repo FACTORY_JOBS_FILES_REPO, and fetched with the job's token. A job launched
  under a stranger's own sign-in cannot read the operator's repo, so its files must fit inline.
- refused, with the fix: local model folders (base_model, lora_model_dir, resume_from_checkpoint, the
  contamination embedding model: weights belong in a Hub repo) and output_dir / dataset_prepared_path
  (the remote machine has its own disk; its run folder is made there).

`manifest` is built at launch; `receive` runs first on the remote side (`factory run --carried-env`): it
writes each piece under its own $FACTORY_HOME, checks its SHA-256, points the request at it, and fails in
seconds naming the missing piece.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from factory.base.errors import UserError
from factory.base.filehash import sha256_of

INLINE_BYTES = 48 * 1024  # every inline piece together, before base64 (a job's environment stays small)
MAX_BYTES = 2 * 1024**3   # one carried file, uploaded
FILES_REPO_ENV = "FACTORY_JOBS_FILES_REPO"
REFUSED = {
    "base_model": "a local model folder cannot travel with a job: push it to a (private) Hub model repo and name that",
    "lora_model_dir": "an adapter folder cannot travel with a job: push it to a Hub repo",
    "resume_from_checkpoint": "a checkpoint on this machine cannot travel with a job; a Jobs run resumes from its own",
    "contamination.embedding_model": "a local embedding model cannot travel with a job: push it to a Hub repo",
    "output_dir": "a Jobs run writes its run folder on the remote machine; leave output_dir out",
    "dataset_prepared_path": "a Jobs run prepares its data on the remote machine; leave dataset_prepared_path out",
}


@dataclass
class Piece:
    """One carried file: where the request names it (`where`: a path into the request YAML, or None when only
    a shipped task names it), its source here, its place under the remote $FACTORY_HOME, hash and size."""
    key: str
    source: str
    dest: str
    sha256: str
    size: int
    where: list | None = None
    inline: str | None = None  # base64, when it travels in the environment
    repo_path: str | None = None  # in FACTORY_JOBS_FILES_REPO, when uploaded


def _piece(key: str, raw: str, where: list | None) -> Piece:
    from factory.base.home import factory_home, placeholders
    from factory.base.paths import within

    for name, value in placeholders().items():
        raw = raw.replace("{" + name + "}", value)
    path = Path(raw).expanduser()
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not on this machine"
        raise UserError(f"{key}: '{raw}' is {what}; the hf-jobs backend carries single files only. Push it to a Hub "
                        "dataset repo and name that instead")
    evals, sha = factory_home() / "evals", sha256_of(path)
    if within(path, evals):  # the same place there: the shipped tasks' {factory_home} paths still hold
        dest = (PurePosixPath("evals") / path.resolve().relative_to(evals.resolve()).as_posix()).as_posix()
    else:
        dest = f"carried/{sha[:16]}/{path.name}"
    return Piece(key, str(path), dest, sha, path.stat().st_size, where)


def plan(request) -> list[Piece]:
    """Every local file the request needs on the remote side, or a UserError naming what cannot travel."""
    from evals.harness import home_files

    from factory.admission.grants import local_paths

    problems = [f"{key}: '{raw}': {REFUSED[key]}" for key, raw in local_paths(request) if key in REFUSED]
    if problems:
        raise UserError("hf-jobs backend: refused:\n  " + "\n  ".join(problems))
    pieces: list[Piece] = []
    for i, d in enumerate(request.datasets):
        if d.is_local:
            pieces.append(_piece(f"datasets[{i}].path", d.path, ["datasets", i, "path"]))
    for j, b in enumerate(request.contamination.benchmarks):
        name, eq, raw = b.partition("=")
        if eq:
            pieces.append(_piece(f"contamination.benchmarks ({name})", raw, ["contamination", "benchmarks", j]))
    shipped = [(f"contamination.benchmarks ({b})", b) for b in request.contamination.benchmarks if "=" not in b]
    shipped += [(f"evals.tasks ({t})", t) for t in request.evals.tasks]  # a file already carried goes once
    for key, task in shipped:
        for rel in home_files(task):
            if not any(p.dest == rel for p in pieces):
                pieces.append(_piece(key, "{factory_home}/" + rel, None))
    return pieces


def check(request, user_token: bool) -> list[Piece]:
    """At submit: everything can travel (inline, or through the operator's files repo), or a UserError."""
    pieces = plan(request)
    inline = sum(p.size for p in pieces)
    if inline <= INLINE_BYTES:
        return pieces
    big = ", ".join(f"{p.key} ({p.size / 1e6:.1f} MB)" for p in pieces)
    if user_token:
        raise UserError(f"hf-jobs backend: {big} together exceed the {INLINE_BYTES // 1024} KiB a job launched under "
                        "your own sign-in can carry; push the data to a Hub dataset repo and name that")
    if not os.environ.get(FILES_REPO_ENV):
        raise UserError(f"hf-jobs backend: {big} together exceed the {INLINE_BYTES // 1024} KiB a job carries in its "
                        f"environment; set {FILES_REPO_ENV} to a private dataset repo of yours (files are uploaded "
                        "there once, by content hash), or name a Hub dataset repo instead")
    for p in pieces:
        if p.size > MAX_BYTES:
            raise UserError(f"hf-jobs backend: {p.key}: {p.size / 1e9:.1f} GB is over the {MAX_BYTES >> 30} GiB a job "
                            "carries; push it to a Hub dataset repo and name that")
    return pieces


def manifest(request, api, user_token: bool) -> tuple[str, list[Piece]]:
    """At launch: the manifest's JSON (the job's FACTORY_CARRIED) and its pieces; large files uploaded first."""
    pieces = check(request, user_token)
    inline = sum(p.size for p in pieces) <= INLINE_BYTES
    repo = None if inline else os.environ[FILES_REPO_ENV]
    for p in pieces:
        data_path = Path(p.source)
        if sha256_of(data_path) != p.sha256:  # changed since submit: the job must see what was checked there
            raise UserError(f"{p.key}: '{p.source}' changed after the job was checked; submit it again")
        if inline:
            p.inline = base64.b64encode(data_path.read_bytes()).decode()
        else:
            p.repo_path = f"sha256/{p.sha256}"
            _upload(api, repo, p)
    out = {"repo": repo, "pieces": [{k: v for k, v in asdict(p).items() if k != "source"} for p in pieces]}
    return json.dumps(out), pieces


def _upload(api, repo: str, piece: Piece) -> None:
    """Once per content: a file already there under its hash is not sent again."""
    api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)
    if api.file_exists(repo, piece.repo_path, repo_type="dataset"):
        return
    api.upload_file(path_or_fileobj=piece.source, path_in_repo=piece.repo_path, repo_id=repo, repo_type="dataset",
                    commit_message=f"factory: carry {Path(piece.source).name} for a Jobs run")


# ---- the remote side -------------------------------------------------------------------------------------

def _inside(home: Path, dest: str) -> Path:
    rel = PurePosixPath(dest)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise UserError(f"carried file: '{dest}' is not a plain path under $FACTORY_HOME")
    return home / Path(*rel.parts)


def receive(manifest_json: str, request_text: str, say=print) -> str:
    """Before anything else on the remote side: every promised file in place and checked, the request
    pointing at them. Returns the request text to run; a UserError names the first missing piece."""
    import yaml

    from factory.base import atomic
    from factory.base.home import factory_home

    try:
        carried = json.loads(manifest_json)
    except ValueError as exc:
        raise UserError(f"--carried-env: not a carry manifest ({exc})") from None
    home = factory_home()
    data = yaml.safe_load(request_text)
    for p in carried["pieces"]:
        target = _inside(home, p["dest"])
        if target.is_file() and sha256_of(target) == p["sha256"]:
            pass
        elif p.get("inline") is not None:
            blob = base64.b64decode(p["inline"])
            atomic.write_with(target, lambda f: f.write(blob))
        elif p.get("repo_path"):
            from huggingface_hub import hf_hub_download

            try:
                got = hf_hub_download(carried["repo"], p["repo_path"], repo_type="dataset")
            except Exception as exc:  # noqa: BLE001 - whatever the Hub says, the piece is missing
                raise UserError(f"carried file {p['key']} is missing: {carried['repo']}/{p['repo_path']} could not "
                                f"be fetched ({type(exc).__name__}); nothing was trained") from None
            with open(got, "rb") as src:
                atomic.write_with(target, lambda f: shutil.copyfileobj(src, f))
        else:
            raise UserError(f"carried file {p['key']}: the manifest gives neither its bytes nor where to fetch them")
        if sha256_of(target) != p["sha256"]:
            raise UserError(f"carried file {p['key']}: its SHA-256 is not the one the worker sent; nothing was trained")
        say(f"carried: {p['key']} -> $FACTORY_HOME/{p['dest']} ({p['size']:,} bytes, sha256 {p['sha256'][:12]})")
        if p.get("where"):
            *parents, last = p["where"]
            node = data
            for step in parents:
                node = node[step]
            if parents[-1:] == ["benchmarks"]:
                node[last] = f"{str(node[last]).partition('=')[0]}={target}"
            else:
                node[last] = str(target)
    return yaml.safe_dump(data, sort_keys=False)
