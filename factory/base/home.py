"""Where local state lives: everything under $FACTORY_HOME (default ~/.factory)."""

from __future__ import annotations

import os
from pathlib import Path


def factory_home() -> Path:
    return Path(os.environ.get("FACTORY_HOME", "~/.factory")).expanduser()


def hub_root() -> Path:
    return factory_home() / "hub"


def runs_root() -> Path:
    return factory_home() / "runs"


def placeholders() -> dict[str, str]:
    """`{name}` placeholders that shipped eval task files and contamination paths may hold."""
    return {"factory_home": str(factory_home())}
