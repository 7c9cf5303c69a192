"""The one helper for every path the factory builds from request data: it stays inside its root.

Repo ids, revisions and run names become folders under the local hub, the runs folder and caches;
`inside` resolves the result (symlinks included) and refuses anything that would land outside the
root, whatever the spelling (`..`, absolute parts, NUL bytes, backslashes).
"""

from __future__ import annotations

import os
from pathlib import Path

from factory.base.errors import UserError


def inside(root: Path, *parts: str, what: str = "path") -> Path:
    """root/parts, refused with a UserError unless it resolves to root itself or below it."""
    for part in parts:
        if not isinstance(part, str) or not part or "\0" in part or "\\" in part or os.path.isabs(part):
            raise UserError(f"{what} {part!r} cannot be used inside {root}: empty, absolute, or holds a NUL or '\\'")
    path = Path(root, *parts)
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise UserError(f"{what} {'/'.join(parts)!r} leads outside {root}; refused")
    return path


def within(path: Path, root: Path) -> bool:
    """True when path (symlinks resolved) is root or lies below it."""
    real, real_root = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real == real_root or real_root in real.parents
