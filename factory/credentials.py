"""Where the Hub token comes from: HF_TOKEN, the factory's secrets file, or huggingface_hub's login.

The token itself is only ever handed to huggingface_hub; everything else sees `source`, a
description such as "HF_TOKEN" (never the value).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from factory.errors import UserError


@dataclass(frozen=True)
class Token:
    value: str
    source: str

    def __repr__(self) -> str:  # never print the value, even by accident
        return f"Token(source={self.source!r})"


def secrets_file() -> Path:
    from factory.home import factory_home

    return Path(os.environ.get("FACTORY_SECRETS_FILE", factory_home() / "secrets.env"))


def _from_secrets_file(path: Path) -> str | None:
    if not path.is_file():
        return None
    if path.stat().st_mode & 0o077:
        raise UserError(f"{path} holds secrets but other users can read it; run: chmod 600 {path}")
    for line in path.read_text().splitlines():
        key, eq, value = line.strip().partition("=")
        if eq and key.strip() == "HF_TOKEN" and value.strip():
            return value.strip().strip('"').strip("'")
    return None


def hf_token() -> Token | None:
    if os.environ.get("HF_TOKEN"):
        return Token(os.environ["HF_TOKEN"], "HF_TOKEN")
    path = secrets_file()
    if value := _from_secrets_file(path):
        return Token(value, f"secrets file {path}")
    from huggingface_hub import get_token

    if value := get_token():  # `hf auth login` cache (HF_HOME/token)
        return Token(value, "huggingface_hub login")
    return None


def allowed_namespace(repo_id: str) -> str | None:
    """None when the operator allows publishing under repo_id's namespace, else why not."""
    allowed = [n.strip() for n in os.environ.get("FACTORY_ALLOWED_NAMESPACES", "").split(",") if n.strip()]
    namespace = repo_id.split("/")[0]
    if allowed and namespace not in allowed:
        return (f"publishing under '{namespace}' is not allowed on this factory "
                f"(FACTORY_ALLOWED_NAMESPACES: {', '.join(allowed)})")
    return None
