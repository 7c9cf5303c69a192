"""Secrets never leave the process: every text bound for a console, log, event, job row or card passes here.

Redacted by source (whatever their shape): the values of the secret environment variables, every value
in the secrets file, and every token the factory handled (`register`: the operator's tokens, per-user
tokens). Redacted by shape, for secrets that came from nowhere we know (a token pasted into a message):
Hugging Face and Discord tokens, passwords in database URLs.
"""

from __future__ import annotations

import os
import re
import threading

SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "DISCORD_TOKEN", "FACTORY_DB_PASSWORD", "FACTORY_SECRET_KEY",
              "WANDB_API_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")  # trackers the Trainer reports to
MIN_LEN = 6  # shorter values would redact ordinary words
PATTERNS = [
    (re.compile(r"hf_[A-Za-z0-9]{20,}"), "hf_***"),
    (re.compile(r"api_org_[A-Za-z0-9]{20,}"), "api_org_***"),
    (re.compile(r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}"), "***discord-token***"),
    (re.compile(r"(postgres(?:ql)?(?:\+\w+)?://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),
    (re.compile(r"(https?://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),  # a tracking URI with a password in it
]

_known: set[str] = set()
_lock = threading.Lock()


def register(secret: str | None) -> None:
    """Remember a secret so that every later redact() removes it."""
    if secret and len(secret) >= MIN_LEN:
        with _lock:
            _known.add(secret)


_file_cache: dict[tuple, list[str]] = {}


def _secrets_file_values() -> list[str]:
    """The secrets file's values, read again only when the file changes (redact runs on every event)."""
    from factory.base.secrets_file import read_secrets, secrets_file

    path = secrets_file()
    try:
        st = path.stat()
    except OSError:
        return []
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_mode)
    if key not in _file_cache:
        try:
            values = list(read_secrets(path).values())
        except Exception:  # noqa: BLE001 - an unreadable secrets file is reported where it is used, not here
            values = []
        _file_cache.clear()
        _file_cache[key] = values
    return _file_cache[key]


_PATH = re.compile(r"(?<![\w:/.~-])(?:/[\w.@+-]+){2,}/?")  # an absolute path of two parts or more (not a URL's)


def scrub_paths(text: str) -> str:
    """Absolute paths cut to their last part (`…/train.jsonl`): what strangers see of an error or an event
    says which file, never where the worker keeps it. The worker's own log keeps the whole text."""
    return _PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def redact(text: str) -> str:
    values = {os.environ.get(name) for name in SECRET_ENV} | set(_secrets_file_values())
    with _lock:
        values |= _known
    for value in sorted((v for v in values if v and len(v) >= MIN_LEN), key=len, reverse=True):
        text = text.replace(value, "***")
    for pattern, repl in PATTERNS:
        text = pattern.sub(repl, text)
    return text
