"""The Chroma vector index of a catalog: embedded store by default, a Chroma server when configured.

Indexing is incremental: every record carries a hash of the text it was embedded from, so a re-run
embeds only new or changed items and deletes items that left the catalog. Records are upserted in
small batches, each durable on its own, so a crash mid-way leaves a valid partial index that the
next run completes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np

from retrieval.catalog import Catalog, Item
from retrieval.config import StoreConfig
from retrieval.embed import Embedder
from retrieval.progress import job_bar

UPSERT_BATCH = 256


class VectorStoreError(RuntimeError):
    """The vector store cannot be used (server unreachable, index missing, files damaged)."""


@contextmanager
def store_errors(what: str, *, catch: type[BaseException] | None = None) -> Iterator[None]:
    """Chroma's own failures (a truncated HNSW file, a damaged chroma.sqlite3, a full disk, a server
    that went away) as VectorStoreError, saying what failed and what to do. `catch`: the exceptions
    to translate (default: Chroma's ChromaError)."""
    from chromadb.errors import ChromaError

    caught = catch or ChromaError
    try:
        yield
    except caught as exc:
        raise VectorStoreError(
            f"{what} failed ({type(exc).__name__}: {exc}); the index may be damaged or its disk full: "
            "free space, or move the Chroma folder aside and rebuild with `aisle index --catalog NAME` "
            "(with AISLE_CHROMA_URL: check the Chroma server)"
        ) from exc


def make_chroma_client(settings: StoreConfig):
    """PersistentClient under `home/chroma`, or HttpClient when `chroma_url` is set."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if not url.hostname:
            raise VectorStoreError(f"AISLE_CHROMA_URL={settings.chroma_url!r} is not a URL; expected e.g. http://127.0.0.1:8000")
        try:
            client = chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
            client.heartbeat()
        except Exception as exc:  # chromadb raises several transport errors
            raise VectorStoreError(
                f"cannot reach the Chroma server at {settings.chroma_url} ({exc.__class__.__name__}: {exc}). "
                "Start it (chroma run --host 127.0.0.1 --port 8000 --path DIR) or unset AISLE_CHROMA_URL to use the embedded store."
            ) from exc
        return client
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    # Any exception: after one failed start Chroma keeps the broken system cached, and the next
    # client on the path fails with AttributeError / ValueError instead.
    with store_errors(f"opening the Chroma store at {settings.chroma_path}", catch=Exception):
        return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)


def collection_name(catalog: str, embed_model_id: str) -> str:
    """One collection per (catalog, embedding model); Chroma allows [a-zA-Z0-9._-], 3-512 chars."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", f"{catalog}.{embed_model_id}").strip("-._")
    return f"aisle-{slug}"


DESC_SUFFIX = "#desc"


def item_metadata(item: Item) -> dict:
    """Filterable fields. Keys are only present when known (Chroma rejects None / empty arrays);
    a missing `price` therefore fails any price filter, which is the documented behaviour."""
    meta: dict = {"title": item.title[:500], "in_stock": item.available}
    if item.brand:
        meta["brand"] = item.brand.casefold()
    if item.categories:
        meta["categories"] = [c.casefold() for c in item.categories]
    if item.price is not None:
        meta["price"] = float(item.price)
    return meta


def title_text(item: Item) -> str:
    return item.text(max_description_chars=0)


def description_text(item: Item, max_chars: int = 600) -> str:
    body = item.searchable_description
    return f"{item.title}\n{body[:max_chars]}" if body else ""


def content_hash(item: Item, model_id: str) -> str:
    """Hash of what gets embedded: when it is unchanged, the vectors are too."""
    payload = "\x1f".join([model_id, title_text(item), description_text(item)])
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()


def metadata_hash(item: Item) -> str:
    """Hash of the filterable fields: a price change rewrites metadata, never vectors."""
    return hashlib.sha1(repr(sorted(item_metadata(item).items())).encode("utf-8")).hexdigest()


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0  # text changed: re-embedded
    restamped: int = 0  # only metadata (price, brand ...) changed: no embedding
    unchanged: int = 0
    deleted: int = 0

    def __str__(self) -> str:
        return f"added {self.added}, re-embedded {self.updated}, metadata only {self.restamped}, unchanged {self.unchanged}, deleted {self.deleted}"


class _LazyBar:
    """A tqdm bar that appears only once there is work to show: a sync that finds every item
    unchanged (every `aisle search` on a built index) prints nothing. Items skipped before the
    first write are counted into the bar's start."""

    def __init__(self, *, total: int | None, desc: str, unit: str, enabled: bool) -> None:
        self.kwargs = {"total": total, "desc": desc, "unit": unit}
        self.enabled = enabled
        self.skipped = 0
        self.bar: Any = None

    def skip(self, n: int) -> None:
        if self.bar is None:
            self.skipped += n
        else:
            self.bar.update(n)

    def update(self, n: int) -> None:
        if self.bar is None:
            self.bar = job_bar(initial=self.skipped, enabled=self.enabled, **self.kwargs)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class CatalogIndex:
    """Chroma collection for one catalog + embedding model.

    Two vectors per item: the title record (id = item id: title, brand, categories) and, when the
    item has a description, a description record (id + "#desc"). Short title vectors keep exact
    product look-ups sharp (a long description drowns the title in one vector); the description
    vector carries what the title does not say. A query takes the best of the two per item.
    """

    def __init__(self, client, catalog_name: str, embedder: Embedder) -> None:
        self.client = client
        self.embedder = embedder
        self.catalog_name = catalog_name
        self.name = collection_name(catalog_name, embedder.model_id)
        with store_errors(f"opening the index of catalog {catalog_name!r}"):
            self.collection = client.get_or_create_collection(
                self.name,
                metadata={"hnsw:space": "cosine", "catalog": catalog_name, "embed_model": embedder.model_id},
                embedding_function=None,
            )

    def count(self) -> int:
        """Number of items (not vectors) in the index."""
        return len(self.stored_hashes())

    def records(self) -> int:
        """Number of records (title and description vectors) in the index."""
        with store_errors(f"counting the index of catalog {self.catalog_name!r}"):
            return self.collection.count()

    def check(self) -> None:
        """Raise VectorStoreError unless the index finds a few of its own records (first, middle,
        last) by their own vectors. Chroma does not verify its HNSW files: a truncated one loads,
        then some searches fail and others return neighbours of zeroed vectors. A few milliseconds."""
        total = self.records()
        where = f"checking the index of catalog {self.catalog_name!r}"
        for offset in sorted({0, total // 2, total - 1} if total else set()):
            with store_errors(where):
                got = self.collection.get(limit=1, offset=offset, include=["embeddings"])
                record_id, vector = got["ids"][0], np.asarray(got["embeddings"][0], dtype=np.float32)
                found = self.collection.query(query_embeddings=[vector], n_results=min(3, total), include=["distances"])
            ids, distances = found["ids"][0], found["distances"][0]
            if record_id not in ids and not (distances and distances[0] < 1e-3):
                raise VectorStoreError(
                    f"the index of catalog {self.catalog_name!r} does not find its record {record_id!r} by that record's own vector: its files are damaged. "
                    f"Move the Chroma folder aside and rebuild with `aisle index --catalog {self.catalog_name}` (with AISLE_CHROMA_URL: check the Chroma server)"
                )

    def stored_hashes(self) -> dict[str, tuple[str, str]]:
        """Item id -> (content hash, metadata hash) of its title record."""
        out: dict[str, tuple[str, str]] = {}
        total = self.records()
        page = 5000
        for offset in range(0, total, page):
            with store_errors(f"reading the index of catalog {self.catalog_name!r}"):
                got = self.collection.get(include=["metadatas"], limit=page, offset=offset, where={"part": "item"})
            for item_id, meta in zip(got["ids"], got["metadatas"]):
                meta = meta or {}
                out[item_id] = (meta.get("content_hash", ""), meta.get("meta_hash", ""))
        return out

    def sync(self, catalog: Catalog | Iterable[Item], *, progress: bool = True, batch_size: int = UPSERT_BATCH, total: int | None = None) -> IndexReport:
        """Make the collection equal to the catalog, embedding only items whose text changed.

        Takes a Catalog, or any iterable of items (streamed: a big import never holds every item
        to embed in memory, only their ids)."""
        report = IndexReport()
        stored = self.stored_hashes()
        items: Iterable[Item] = catalog.items.values() if isinstance(catalog, Catalog) else catalog
        total = len(catalog) if isinstance(catalog, Catalog) else total
        seen: set[str] = set()
        todo: list[tuple[Item, str, str]] = []
        restamp: list[tuple[Item, str, str]] = []
        bar = _LazyBar(total=total, desc=f"indexing {self.catalog_name}", unit="item", enabled=progress)
        for item in items:
            seen.add(item.id)
            digest, meta_digest = content_hash(item, self.embedder.model_id), metadata_hash(item)
            old = stored.get(item.id)
            if old == (digest, meta_digest):
                report.unchanged += 1
                bar.skip(1)
            elif old is not None and old[0] == digest:
                report.restamped += 1
                restamp.append((item, digest, meta_digest))
            else:
                report.added += old is None
                report.updated += old is not None
                todo.append((item, digest, meta_digest))
            if len(todo) >= batch_size:
                self._write(todo)
                bar.update(len(todo))
                todo = []
            if len(restamp) >= 5000:
                self._restamp(restamp)
                bar.update(len(restamp))
                restamp = []
        if todo:
            self._write(todo)
            bar.update(len(todo))
        if restamp:
            self._restamp(restamp)
            bar.update(len(restamp))
        bar.close()
        stale = [item_id for item_id in stored if item_id not in seen]
        for start in range(0, len(stale), 5000):
            chunk = stale[start : start + 5000]
            self.collection.delete(ids=chunk + [i + DESC_SUFFIX for i in chunk])
        report.deleted = len(stale)
        return report

    def _restamp(self, chunk: list[tuple[Item, str, str]]) -> None:
        """New metadata on existing records (no embedding). Chroma's update needs existing ids, so
        description records are updated only for items that have one."""
        self.collection.update(
            ids=[item.id for item, _, _ in chunk],
            metadatas=[{**item_metadata(item), "part": "item", "content_hash": d, "meta_hash": m} for item, d, m in chunk],
        )
        with_desc = [item for item, _, _ in chunk if item.searchable_description]
        if with_desc:
            self.collection.update(ids=[item.id + DESC_SUFFIX for item in with_desc], metadatas=[{**item_metadata(item), "part": "description"} for item in with_desc])

    def _write(self, chunk: list[tuple[Item, str, str]]) -> None:
        """Description records first, title records (which carry the content hash) last: if the
        process dies in between, the item still looks un-indexed and the next sync redoes it."""
        with_desc = [item for item, _, _ in chunk if item.searchable_description]
        if with_desc:
            vectors = self.embedder.encode([description_text(item) for item in with_desc])
            self.collection.upsert(
                ids=[item.id + DESC_SUFFIX for item in with_desc],
                embeddings=vectors,
                metadatas=[{**item_metadata(item), "part": "description"} for item in with_desc],
            )
        without = [item.id + DESC_SUFFIX for item, _, _ in chunk if not item.searchable_description]
        if without:
            self.collection.delete(ids=without)
        vectors = self.embedder.encode([title_text(item) for item, _, _ in chunk])
        self.collection.upsert(
            ids=[item.id for item, _, _ in chunk],
            embeddings=vectors,
            documents=[item.text(max_description_chars=2000) for item, _, _ in chunk],
            metadatas=[{**item_metadata(item), "part": "item", "content_hash": d, "meta_hash": m} for item, d, m in chunk],
        )

    def query(self, vector: np.ndarray, n: int, where: dict | None = None) -> list[tuple[str, float]]:
        """Nearest items as (item id, best cosine similarity over its vectors), best first."""
        n_records = max(1, min(2 * n, self.records()))
        with store_errors(f"searching the index of catalog {self.catalog_name!r}"):
            got = self.collection.query(query_embeddings=[vector], n_results=n_records, where=where, include=["distances"])
        best: dict[str, float] = {}
        for record_id, dist in zip(got["ids"][0], got["distances"][0]):
            item_id = record_id.removesuffix(DESC_SUFFIX)
            best[item_id] = max(best.get(item_id, -1.0), 1.0 - float(dist))
        return sorted(best.items(), key=lambda kv: -kv[1])[:n]

    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Title-record vectors (used for "similar to these items"). A repeated id is asked for
        once: Chroma refuses a request that names an id twice (a history with a re-purchase)."""
        if not ids:
            return {}
        with store_errors(f"reading vectors of catalog {self.catalog_name!r}"):
            got = self.collection.get(ids=list(dict.fromkeys(ids)), include=["embeddings"])
        return {item_id: np.asarray(vec, dtype=np.float32) for item_id, vec in zip(got["ids"], got["embeddings"])}

    def all_vectors(self, page: int = 5000) -> tuple[list[str], np.ndarray]:
        """Every record's vector with the item id it belongs to (one item may have two records)."""
        total = self.records()
        item_ids: list[str] = []
        chunks: list[np.ndarray] = []
        for offset in range(0, total, page):
            with store_errors(f"reading vectors of catalog {self.catalog_name!r}"):
                got = self.collection.get(include=["embeddings"], limit=page, offset=offset)
            item_ids.extend(record_id.removesuffix(DESC_SUFFIX) for record_id in got["ids"])
            chunks.append(np.asarray(got["embeddings"], dtype=np.float32).reshape(len(got["ids"]), -1))
        matrix = np.concatenate(chunks) if chunks else np.zeros((0, self.embedder.dim), dtype=np.float32)
        return item_ids, matrix

    def drop(self) -> None:
        self.client.delete_collection(self.name)


def drop_catalog_collections(client, catalog_name: str) -> list[str]:
    """Delete every collection of a catalog (one per embedding model); returns their names."""
    dropped = []
    for collection in client.list_collections():
        if (collection.metadata or {}).get("catalog") == catalog_name:
            client.delete_collection(collection.name)
            dropped.append(collection.name)
    return dropped
