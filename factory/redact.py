"""Secrets never leave the process: every text bound for a log, event, job row or card passes here."""

from __future__ import annotations

import os
import re

SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "DISCORD_TOKEN", "FACTORY_DB_PASSWORD")
# Token shapes, for secrets that did not come from the environment (a pasted token in a message).
PATTERNS = [re.compile(r"hf_[A-Za-z0-9]{20,}"), re.compile(r"(postgres(?:ql)?(?:\+\w+)?://[^:/@\s]+:)[^@\s]+@")]


def redact(text: str) -> str:
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    text = PATTERNS[0].sub("hf_***", text)
    return PATTERNS[1].sub(r"\1***@", text)
