"""Local files are the operator's to grant: what a queued request may read from this machine's disk.

A request run with `factory run` on the operator's own machine may name any local file. A request
from the queue (any front door, the CLI's `factory submit` included) may name local model folders,
data files and benchmark files only inside the folders listed in FACTORY_DATA_ROOTS, and never inside
$FACTORY_HOME (other jobs' run folders, the local hub's internals, the job database, the secrets file),
except $FACTORY_HOME/evals, the held-out task files the factory writes for its own evals.
Symlinks are resolved before the check.
"""

from __future__ import annotations

import os
from pathlib import Path

from factory.request.config import Request
from factory.base.errors import UserError
from factory.base.ids import looks_like_repo_id
from factory.base.paths import within


def data_roots() -> list[Path]:
    raw = os.environ.get("FACTORY_DATA_ROOTS", "")
    return [Path(p).expanduser() for p in raw.replace(",", os.pathsep).split(os.pathsep) if p.strip()]


def local_paths(request: Request) -> list[tuple[str, str]]:
    """(key, path) for every file or folder on this machine that the request would read."""
    from factory.base.home import placeholders

    out = []
    base = request.base_model
    on_disk = (Path(base).expanduser() / "config.json").is_file() or (
        base.lower().endswith(".gguf") and Path(base).expanduser().is_file())
    if not looks_like_repo_id(base) or on_disk:
        out.append(("base_model", base))  # a folder or .gguf on disk wins over a same-named Hub id (hub.model_folder)
    for i, d in enumerate(request.datasets):
        if d.is_local:
            out.append((f"datasets[{i}].path", d.path))
    for b in request.contamination.benchmarks:
        name, eq, path = b.partition("=")
        if eq:
            for key, value in placeholders().items():
                path = path.replace("{" + key + "}", value)
            out.append((f"contamination.benchmarks ({name})", path))
    if request.contamination.embedding_model:
        out.append(("contamination.embedding_model", request.contamination.embedding_model))
    for key in ("output_dir", "dataset_prepared_path", "lora_model_dir", "resume_from_checkpoint"):
        if getattr(request, key):
            out.append((key, getattr(request, key)))
    return out


def check_queued(request: Request, source: str = "request") -> None:
    """Refuse a queued request that names a local path outside the operator's grant (UserError)."""
    from factory.base.home import factory_home

    paths = local_paths(request)
    if not paths:
        return
    roots = data_roots()
    problems = []
    for key, raw in paths:
        path = Path(raw).expanduser()
        if "\0" in raw:
            problems.append(f"{key}: holds a NUL byte")
        elif within(path, factory_home() / "evals"):
            continue  # the factory's own held-out task files (the demo's): written by it, no secrets
        elif within(path, factory_home()):
            problems.append(f"{key}: '{raw}' lies inside the factory's own state ($FACTORY_HOME: run folders, hub, "
                            "job database, secrets); a queued job may not read it")
        elif not any(within(path, root) for root in roots):
            where = (f"inside FACTORY_DATA_ROOTS ({os.pathsep.join(map(str, roots))})" if roots else
                     "anywhere: FACTORY_DATA_ROOTS is not set, so queued jobs read only Hub repos")
            problems.append(f"{key}: '{raw}' is a local path, and queued jobs may read local files only {where}; "
                            "use a Hub repo id, or ask the operator to grant the folder")
    if problems:
        raise UserError(f"{source}: refused:\n  " + "\n  ".join(problems))
