"""Scores kept on disk by the key of everything that decides them, so an unchanged model is scored once.

An entry is one JSON file per key, written whole (temp file and rename); one that does not read back
as an entry is ignored (and rewritten by the next save)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

VERSION = 1  # bump when what a score means changes


def key_of(fields: dict) -> str:
    """The key of a score: a hash of its inputs, as JSON with sorted keys."""
    text = json.dumps({"version": VERSION, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load(folder: Path, key: str) -> dict | None:
    """The entry's score and when it was computed ({"score": ..., "computed": ISO time}), or None."""
    try:
        entry = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
        if entry["key"] != key or not isinstance(entry["score"], dict) or not isinstance(entry["computed"], str):
            return None
        float(entry["score"]["value"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"score": entry["score"], "computed": entry["computed"]}


def save(folder: Path, key: str, score: dict, fields: dict) -> str:
    """Write the entry (its inputs beside it, for a person reading the folder); returns its time."""
    computed = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{key}.json"
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"key": key, "computed": computed, "score": score, "inputs": fields},
                              indent=1, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, final)
    return computed
