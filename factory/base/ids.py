"""Checks for repo ids and local paths that come from users (YAML, Discord, the Space)."""

from __future__ import annotations

import re

# Hub rules: namespace/name, letters, digits, '-', '_', '.'; no '..', no leading/trailing '.' or '-'.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID = re.compile(rf"^{_PART}/{_PART}$")


def repo_id_problem(value: str) -> str | None:
    """None when value is a valid 'org/name' repo id, else what is wrong with it."""
    if ".." in value:
        return f"'{value}' contains '..'; a repo id is 'org/name' with no path tricks"
    if value.startswith("/") or value.startswith("~"):
        return f"'{value}' is an absolute path, not a repo id 'org/name'"
    if not REPO_ID.match(value):
        return f"'{value}' is not a repo id of the form 'org/name' (letters, digits, '-', '_', '.')"
    return None


def looks_like_repo_id(value: str) -> bool:
    return REPO_ID.match(value) is not None and ".." not in value


_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def revision_problem(value: str) -> str | None:
    """None for a branch or tag name, or a 40-hex commit id; never a path (no '/', '\\', '..', NUL)."""
    if not isinstance(value, str) or not _REVISION.match(value) or ".." in value:
        return (f"{value!r} is not a revision: give a branch or tag name (letters, digits, '.', '_', '-'; "
                "no '/', '\\', '..') or a 40-character commit id")
    return None
