"""Shared fixtures: real data from ../shared/data, a real Chroma index built once per session.

The test home (`.aisle/test`, git-ignored) persists between local runs; indexing is incremental,
so a second run only checks content hashes instead of re-embedding the catalog.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from agent.settings import REPO_ROOT, Settings, force_offline

force_offline()

TEST_HOME = Path(os.environ.get("AISLE_TEST_HOME", REPO_ROOT / ".aisle" / "test"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def settings() -> Settings:
    s = Settings(home=TEST_HOME, chroma_url=None, llm="transformers")
    if not s.data_dir.is_dir():
        pytest.exit(f"shared data not found at {s.data_dir}; set AISLE_DATA_DIR", returncode=2)
    # Converted LLM weights are shared with the normal home so tests don't convert twice.
    return s


@pytest.fixture(scope="session")
def office_catalog(settings):
    from retrieval.registry import load_catalog

    return load_catalog(settings, "amazon-office-2014")


@pytest.fixture(scope="session")
def office_interactions(settings):
    from retrieval.registry import load_interactions

    return load_interactions(settings, "amazon-office-2014")


@pytest.fixture(scope="session")
def office_searcher(settings, office_catalog):
    """The full amazon-office-2014 catalog in a real embedded Chroma store."""
    from retrieval.search import open_searcher

    return open_searcher(settings, catalog=office_catalog, progress=False)


@pytest.fixture(scope="session")
def shopdial_searcher(settings):
    """mg-shopdial: the small catalog that has prices."""
    from retrieval.search import open_searcher

    return open_searcher(settings, "mg-shopdial", progress=False)
