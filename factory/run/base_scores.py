"""The base model's eval scores, computed once per machine: cached under $FACTORY_HOME/cache/base_scores
by everything that decides them (the base's revision or file hashes, the task's definition, data and
item ids, the chat template, generation settings, dtype, batch size and the library versions)."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from evals import score_cache
from factory.base.home import factory_home

BATCH_SIZE = 16  # evaluate()'s default: generation pads by batch, so it is part of the key


def cache_dir() -> Path:
    return factory_home() / "cache" / "base_scores"


def model_identity(base_dir: Path, hub: str, repo: str, revision: str | None) -> dict:
    """A Hub or local-hub revision names its content (its id is a hash of it); a plain folder is hashed."""
    if revision:
        return {"hub": hub, "repo": repo, "revision": revision}
    from factory.base.filehash import sha256_of

    return {"files": {p.name: sha256_of(p) for p in sorted(base_dir.iterdir())
                      if p.is_file() and p.name != "README.md"}}


def dtype_of(base_dir: Path) -> str:
    """What `dtype="auto"` loads: the config's dtype (float32 when it names none)."""
    try:
        config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def _versions() -> dict:
    out = {}
    for pkg in ("lm-eval", "transformers", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def keys(model: dict, dtype: str, template: str | None, tasks: dict[str, dict], settings: dict) -> dict[str, dict]:
    """Each task's cache key and the inputs it was made from."""
    out = {}
    for task, inputs in tasks.items():
        fields = {"model": model, "dtype": dtype, "chat_template": template, "task": task, "inputs": inputs,
                  "settings": settings, "batch_size": BATCH_SIZE, "versions": _versions()}
        out[task] = {"key": score_cache.key_of(fields), "fields": fields}
    return out


def cached(keyed: dict[str, dict]) -> dict[str, dict]:
    """The tasks whose base score is in the cache: {task: {"score": ..., "computed": ...}}."""
    hits = {}
    for task, k in keyed.items():
        entry = score_cache.load(cache_dir(), k["key"])
        if entry is not None:
            hits[task] = entry
    return hits


def store(keyed: dict[str, dict], task: str, score: dict) -> None:
    score_cache.save(cache_dir(), keyed[task]["key"], score, keyed[task]["fields"])
