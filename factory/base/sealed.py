"""Per-user tokens at rest: sealed with Fernet (the `cryptography` package) under a key the operator keeps
in FACTORY_SECRET_KEY, so a job row, a database dump or a backup never holds one in clear.

FACTORY_SECRET_KEY may be a Fernet key (`Fernet.generate_key()`) or any long passphrase (stretched
with HKDF-SHA256). Without it, per-user tokens are not kept at all.
"""

from __future__ import annotations

import base64
import os

from factory.base.errors import UserError

MIN_PASSPHRASE = 16


def secret_key() -> bytes | None:
    raw = os.environ.get("FACTORY_SECRET_KEY", "").strip()
    if not raw:
        return None
    try:
        if len(base64.urlsafe_b64decode(raw.encode())) == 32:
            return raw.encode()
    except ValueError:
        pass
    if len(raw) < MIN_PASSPHRASE:
        raise UserError(f"FACTORY_SECRET_KEY is too short: use a Fernet key or a passphrase of {MIN_PASSPHRASE}+ characters")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"model-factory job tokens").derive(raw.encode())
    return base64.urlsafe_b64encode(derived)


def seal(value: str) -> str:
    from cryptography.fernet import Fernet

    key = secret_key()
    if key is None:
        raise UserError("per-user tokens need FACTORY_SECRET_KEY on this factory; the operator must set it")
    return Fernet(key).encrypt(value.encode()).decode()


def unseal(sealed: str) -> str:
    from cryptography.fernet import Fernet, InvalidToken

    key = secret_key()
    if key is None:
        raise UserError("a job carries a sealed per-user token but FACTORY_SECRET_KEY is not set on this worker")
    try:
        return Fernet(key).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise UserError("the job's per-user token cannot be opened with this worker's FACTORY_SECRET_KEY "
                        "(the key differs from the one it was sealed with); sign in and submit again") from None
