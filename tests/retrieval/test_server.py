"""Server mode against a real `chroma run` on 127.0.0.1 (started and stopped by the test)."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent.settings import Settings
from retrieval.catalog import Catalog, LoadReport
from retrieval.index import VectorStoreError, make_chroma_client
from retrieval.search import SearchFilters, open_searcher
from tests.conftest import free_port


def _chroma_bin() -> str:
    exe = Path(sys.executable).with_name("chroma")
    return str(exe) if exe.exists() else (shutil.which("chroma") or "chroma")


@pytest.fixture
def chroma_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [_chroma_bin(), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(tmp_path / "server-data")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("chroma run did not come up within 60 s")
    yield proc, url
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=20)


def test_index_and_query_through_a_real_server(chroma_server, tmp_path, office_catalog):
    proc, url = chroma_server
    settings = Settings(home=tmp_path / "home", chroma_url=url)
    items = {i: it for i, it in office_catalog.items.items() if "Stapler" in it.title or "Pen" in it.title}
    cat = Catalog("server-test", items, LoadReport("server-test", loaded=len(items)))

    searcher = open_searcher(settings, catalog=cat, progress=False)
    assert searcher.index.count() == len(items)
    assert not (tmp_path / "home" / "chroma").exists()  # nothing went to the embedded store

    hits = searcher.search("heavy duty stapler", 5, filters=SearchFilters(exclude_brands=("Swingline",)))
    assert hits and all("stapler" in h.item.title.casefold() or h.lexical_rank is None for h in hits[:1])
    assert all(h.item.brand.casefold() != "swingline" for h in hits)

    # a second client sees the same data (it lives in the server, not in this process)
    again = open_searcher(settings, catalog=cat, build=False, progress=False)
    assert again.index.count() == len(items)

    # stop the server for real: the next connection is a clear, typed error
    proc.terminate()
    proc.wait(timeout=20)
    with pytest.raises(VectorStoreError, match="cannot reach the Chroma server"):
        make_chroma_client(settings)


def test_bad_server_url_is_a_clear_error(tmp_path):
    with pytest.raises(VectorStoreError, match="not a URL"):
        make_chroma_client(Settings(home=tmp_path, chroma_url="localhost-no-scheme"))
