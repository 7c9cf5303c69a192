"""Atomic writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable


def write_with(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """path holds whatever write(f) puts in a binary file, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    from factory.base import interrupt

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with interrupt.partial(Path(tmp)), os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_with(path, lambda f: f.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def fsync_tree(root: Path) -> None:
    """Flush every file under root to disk before it is renamed into place."""
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
