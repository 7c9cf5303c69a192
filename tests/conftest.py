"""Shared fixtures: an isolated FACTORY_HOME, the shared data folder, tiny models built in code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACTORY_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared/data: skipped with a reason when absent, a failure when FACTORY_REQUIRE_SHARED_DATA=1."""
    if not SHARED.is_dir():
        missing(f"shared data not found at {SHARED} (a fresh clone without ../shared)", "FACTORY_REQUIRE_SHARED_DATA")
    return SHARED


def missing(msg: str, required_by: str) -> None:
    """Skip with the reason, or fail when the environment variable says the thing is required, or under
    CI=true: a skip in CI is a test that did not run, so it must not pass quietly."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{msg} but {required_by}=1")
    if os.environ.get("CI", "").lower() in ("1", "true"):
        pytest.fail(f"{msg} (under CI=true every test must run; set it up, or unset CI to skip)")
    pytest.skip(msg)


@pytest.fixture(autouse=True)
def data_roots(tmp_path_factory, monkeypatch) -> Path:
    """Queued test jobs may read local files anywhere under pytest's temp root (FACTORY_DATA_ROOTS);
    FACTORY_HOME inside it stays refused, as on a real machine."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("FACTORY_DATA_ROOTS", str(root))
    return root


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "factory-home"
    monkeypatch.setenv("FACTORY_HOME", str(h))
    return h


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from factory.demo.synthetic import corpus_for_tokenizer
    from factory.demo.tiny import build_tokenizer

    return build_tokenizer(corpus_for_tokenizer())


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """The demo's tiny base model written to a folder once per session."""
    from factory.demo.tiny import write_base

    path = tmp_path_factory.mktemp("tiny-base")
    write_base(path)
    return path


@pytest.fixture
def demo_hub(home, monkeypatch):
    """The embedded default's tiny base, dataset and held-out eval file in a fresh local hub."""
    from factory.base.progress import Silent
    from factory.demo import demo
    from factory.hub.local import LocalHub

    monkeypatch.setenv("FACTORY_HUB", "local")
    hub = LocalHub(home / "hub")
    demo.ensure_assets(hub, Silent())
    return hub


# ---- job queue databases -------------------------------------------------------------------------

PG_URL = os.environ.get("FACTORY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_or_skip() -> str:
    """The test PostgreSQL server's URL; skip when none answers, fail when FACTORY_REQUIRE_PG=1."""
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means no server for us
        missing(f"no PostgreSQL server at {PG_URL} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})",
                "FACTORY_REQUIRE_PG")
    return PG_URL


@pytest.fixture
def pg_url() -> str:
    """A fresh schema on the test server for this test, dropped afterwards."""
    import uuid

    import sqlalchemy

    base = _pg_or_skip()
    schema = f"factory_test_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # survives a restart
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    yield f"{base}?options=-csearch_path%3D{schema}"
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, home) -> str:
    """Every queue test runs on both databases: a SQLite file in FACTORY_HOME, and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{home / 'jobs.db'}"
    return request.getfixturevalue("pg_url")


# ---- a Hub-compatible server ---------------------------------------------------------------------

def fake_token(label: str) -> str:
    """A token-shaped test value, built at run time so no token-like literal sits in the repo."""
    return "hf" + "_" + label.ljust(36, "0")


CANARY = fake_token("canaryTOKENthatMustNeverLeak")


@pytest.fixture
def hub(monkeypatch, tmp_path, tiny_base):
    """tests/hub_server.py as the operator's HF_ENDPOINT, HF_TOKEN the canary; a tiny base, a dataset,
    a private and a gated repo."""
    import json

    import huggingface_hub.constants as c
    from hub_server import HubServer

    with HubServer() as server:
        server.state.tokens[CANARY] = "me"
        files = {p.name: p.read_bytes() for p in tiny_base.iterdir() if p.is_file()}
        files["README.md"] = b"---\nlicense: mit\nlanguage:\n- en\n---\n# tiny base\n"
        server.state.add_repo("model", "org/tiny-base", files)
        rows = "".join(json.dumps({"instruction": f"Name song {i}", "output": f"Song {i} is about rain"}) + "\n"
                       for i in range(40))
        server.state.add_repo("dataset", "org/songs", {"data/train.jsonl": rows.encode(), "README.md": b"# songs\n"})
        server.state.add_repo("model", "org/private-base", files, private=True)
        server.state.add_repo("model", "org/gated-base", files, gated=True)
        monkeypatch.setenv("HF_TOKEN", CANARY)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.delenv("FACTORY_HUB", raising=False)
        monkeypatch.delenv("FACTORY_HUB_ENDPOINTS", raising=False)
        monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(c, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(c, "ENDPOINT", server.url)
        monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        yield server
