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
        msg = f"shared data not found at {SHARED} (a fresh clone without ../shared)"
        if os.environ.get("FACTORY_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(msg + " but FACTORY_REQUIRE_SHARED_DATA=1")
        pytest.skip(msg)
    return SHARED


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
