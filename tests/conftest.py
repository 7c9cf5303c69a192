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
    """Skip with the reason, or fail when the environment variable says the thing is required (CI)."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{msg} but {required_by}=1")
    pytest.skip(msg)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "factory-home"
    monkeypatch.setenv("FACTORY_HOME", str(h))
    return h


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from factory.synthetic import corpus_for_tokenizer
    from factory.tiny import build_tokenizer

    return build_tokenizer(corpus_for_tokenizer())


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """The demo's tiny base model written to a folder once per session."""
    from factory.tiny import write_base

    path = tmp_path_factory.mktemp("tiny-base")
    write_base(path)
    return path


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
