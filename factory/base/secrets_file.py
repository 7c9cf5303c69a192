"""The operator's secrets file ($FACTORY_HOME/secrets.env, or FACTORY_SECRETS_FILE): KEY=VALUE lines, read only
when no one else may read the file. Below both the token lookup (hub) and the redaction that hides its values."""

from __future__ import annotations

import os
from pathlib import Path

from factory.base.errors import UserError
from factory.base.home import factory_home


def secrets_file() -> Path:
    return Path(os.environ.get("FACTORY_SECRETS_FILE", factory_home() / "secrets.env"))


def read_secrets(path: Path | None = None) -> dict[str, str]:
    """KEY=VALUE lines of the secrets file ({} when there is none); refused unless only its owner can read it."""
    path = path or secrets_file()
    if not path.is_file():
        return {}
    if path.stat().st_mode & 0o077:
        raise UserError(f"{path} holds secrets but other users can read it; run: chmod 600 {path}")
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, eq, value = line.strip().partition("=")
        if eq and key.strip() and value.strip():
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out
