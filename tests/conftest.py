"""Shared test set-up: real data paths and a sandboxed environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MITDB = Path(os.environ.get("ECG_MITDB_DIR", SHARED_DATA / "mitdb"))
QTDB = SHARED_DATA / "qtdb-dev"
ARDUINO = SHARED_DATA / "arduino"
SAMPLES = REPO / "ecgcore" / "data" / "mitdb"

# Nothing a test does may write to the user's home.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("KERAS_HOME", str(REPO / ".cache" / "keras-home"))
os.environ.setdefault("ECG_CACHE_DIR", str(REPO / ".cache" / "test-cache"))


def pytest_collection_modifyitems(config, items):
    if not MITDB.exists():
        raise pytest.UsageError(
            f"the tests need MIT-BIH at {MITDB}: set ECG_MITDB_DIR or put ../shared beside the repo"
        )


@pytest.fixture(scope="session")
def mitdb() -> Path:
    return MITDB


@pytest.fixture(scope="session")
def qtdb() -> Path:
    return QTDB


@pytest.fixture(scope="session")
def arduino_dir() -> Path:
    return ARDUINO
