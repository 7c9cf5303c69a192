"""Which Hub endpoints the operator allows, and the token bound to each.

The endpoint is the operator's: HF_ENDPOINT (default https://huggingface.co) plus any listed in
FACTORY_HUB_ENDPOINTS ("URL" or "URL=ENV_VAR", the variable holding that endpoint's token). A request
may name one of these, never another. A token is bound to the endpoint it was configured for and is
handed to huggingface_hub only for that endpoint. Plain http:// is refused except on loopback (tests).

The operator's token for HF_ENDPOINT: HF_TOKEN, the factory's secrets file, or huggingface_hub's
login. Everything but huggingface_hub sees `source`, a description such as "HF_TOKEN" (never the value).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from factory.base.errors import UserError
from factory.base.secrets_file import read_secrets, secrets_file

DEFAULT_ENDPOINT = "https://huggingface.co"
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    source: str
    endpoint: str = DEFAULT_ENDPOINT  # the only endpoint this token is ever sent to

    def __post_init__(self) -> None:
        from factory.base.redact import register

        register(self.value)  # whatever its shape, it is redacted from every text the factory writes

    def __repr__(self) -> str:  # never print the value, even by accident
        return f"Token(source={self.source!r}, endpoint={self.endpoint!r})"


def normalise_endpoint(url: str) -> str:
    return url.strip().rstrip("/")


def endpoint_problem(url: str) -> str | None:
    """None when url is a well-formed https URL, or http on a loopback address; else what is wrong."""
    if not _URL.match(url):
        return f"'{url}' is not an http(s) URL such as https://huggingface.co"
    parsed = urlparse(url)
    if parsed.scheme == "http" and not _loopback(parsed.hostname or ""):
        return f"'{url}' is plain http: tokens would cross the network in clear; use https (http only on loopback)"
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def operator_endpoint() -> str:
    return normalise_endpoint(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)


def _extra_endpoints() -> dict[str, str | None]:
    """FACTORY_HUB_ENDPOINTS: {endpoint: name of the environment variable with its token, or None}."""
    out: dict[str, str | None] = {}
    for entry in os.environ.get("FACTORY_HUB_ENDPOINTS", "").split(","):
        url, eq, var = entry.strip().partition("=")
        if url:
            out[normalise_endpoint(url)] = var.strip() or None
    return out


def allowed_endpoints() -> list[str]:
    return [operator_endpoint(), *(e for e in _extra_endpoints() if e != operator_endpoint())]


def check_endpoint(url: str | None) -> str:
    """The endpoint to use: the operator's when url is None, else url if the operator allows it."""
    endpoint = operator_endpoint() if url is None else normalise_endpoint(url)
    if problem := endpoint_problem(endpoint):
        raise UserError(problem if url is not None else f"HF_ENDPOINT: {problem}")
    if endpoint not in allowed_endpoints():
        raise UserError(f"hub_endpoint '{endpoint}' is not one this factory sends requests to (allowed: "
                        f"{', '.join(allowed_endpoints())}); remove the key, or ask the operator to add it to "
                        "FACTORY_HUB_ENDPOINTS")
    return endpoint


def hf_token(endpoint: str | None = None) -> Token | None:
    """The operator's token for endpoint (default: HF_ENDPOINT), or None when none is configured for it."""
    endpoint = operator_endpoint() if endpoint is None else normalise_endpoint(endpoint)
    if endpoint != operator_endpoint():
        var = _extra_endpoints().get(endpoint)
        value = os.environ.get(var) if var else None
        return Token(value, var, endpoint) if value else None
    if os.environ.get("HF_TOKEN"):
        return Token(os.environ["HF_TOKEN"], "HF_TOKEN", endpoint)
    path = secrets_file()
    if value := read_secrets(path).get("HF_TOKEN"):
        return Token(value, f"secrets file {path}", endpoint)
    from huggingface_hub import get_token

    if value := get_token():  # `hf auth login` cache (HF_HOME/token)
        return Token(value, "huggingface_hub login", endpoint)
    return None


def allowed_namespace(repo_id: str) -> str | None:
    """None when the operator allows publishing under repo_id's namespace, else why not."""
    allowed = [n.strip() for n in os.environ.get("FACTORY_ALLOWED_NAMESPACES", "").split(",") if n.strip()]
    namespace = repo_id.split("/")[0]
    if allowed and namespace not in allowed:
        return (f"publishing under '{namespace}' is not allowed on this factory "
                f"(FACTORY_ALLOWED_NAMESPACES: {', '.join(allowed)})")
    return None
