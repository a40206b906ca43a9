"""Hybrid search: dense (Chroma) + lexical (BM25), fused by reciprocal rank fusion, with filters.

Filters are applied inside both retrievers rather than after fusion, so a filtered query still
returns `k` items when `k` matching items exist. Both sides use one boolean mask over the catalog
(numpy, built from column arrays). The dense side then picks its path by how much the filter lets
through:
- no filter, or a broad one (>= BROAD_FILTER_SHARE of the items): Chroma's HNSW query,
  over-fetched and post-filtered by the mask;
- a selective filter: exact cosine over just the allowed items' vectors (fetched from Chroma once,
  on the first such query). Exact, and at 50k items far faster than Chroma's own `where`
  pre-filter, which reads the metadata from SQLite on every query (bench/retrieval.py prints both).
`SearchFilters.to_chroma_where` is kept as the reference the fast path is tested against.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from retrieval.catalog import Catalog, Item
from retrieval.config import StoreConfig
from retrieval.embed import Embedder
from retrieval.index import CatalogIndex, VectorStoreError, make_chroma_client
from retrieval.lexical import LexicalIndex

RRF_K = 60  # the constant from Cormack et al. (2009); dampens the weight of top ranks
# A filter that lets through at least this share of the catalog goes to HNSW + post-filtering;
# a narrower one is scored exactly (at 50k items a quarter is ~25k vectors: a few ms).
BROAD_FILTER_SHARE = 0.25


@dataclass(frozen=True)
class SearchFilters:
    """Constraints on items. Matching is case-insensitive; categories match any level of the path.

    A price bound excludes items whose price is unknown (we cannot claim they fit the budget)."""

    brands: tuple[str, ...] = ()
    exclude_brands: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    attributes: tuple[tuple[str, str], ...] = ()  # (name, value): the item's attribute lists the value

    def __post_init__(self) -> None:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min ({self.price_min}) is greater than price_max ({self.price_max})")

    def is_empty(self) -> bool:
        return not (self.brands or self.exclude_brands or self.categories or self.attributes) and self.price_min is None and self.price_max is None

    def matches(self, item: Item) -> bool:
        for name, value in self.attributes:
            if value.casefold() not in attribute_values(item.attribute(name)):
                return False
        brand = item.brand.casefold()
        if self.brands and brand not in {b.casefold() for b in self.brands}:
            return False
        if self.exclude_brands and brand in {b.casefold() for b in self.exclude_brands}:
            return False
        if self.categories:
            cats = {c.casefold() for c in item.categories}
            if not cats & {c.casefold() for c in self.categories}:
                return False
        if self.price_min is not None or self.price_max is not None:
            if item.price is None:
                return False
            if self.price_min is not None and item.price < self.price_min:
                return False
            if self.price_max is not None and item.price > self.price_max:
                return False
        return True

    def to_chroma_where(self) -> dict | None:
        """The same filter in Chroma's language (attributes excepted: they are not stored there)."""
        clauses: list[dict] = []
        if self.brands:
            clauses.append({"brand": {"$in": [b.casefold() for b in self.brands]}})
        if self.exclude_brands:
            # `$nin` also passes records with no brand key, like `matches` does.
            clauses.append({"brand": {"$nin": [b.casefold() for b in self.exclude_brands]}})
        if self.categories:
            cats = [{"categories": {"$contains": c.casefold()}} for c in self.categories]
            clauses.append(cats[0] if len(cats) == 1 else {"$or": cats})
        if self.price_min is not None:
            clauses.append({"price": {"$gte": float(self.price_min)}})
        if self.price_max is not None:
            clauses.append({"price": {"$lte": float(self.price_max)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def attribute_values(value: str) -> set[str]:
    """ "S, M, L" -> {"s", "m", "l"}: an attribute may list several values (a product's variants)."""
    return {v.strip().casefold() for v in value.split(",") if v.strip()}


def lexical_text(item: Item) -> str:
    """BM25 document: the title counted twice (a title word is worth more than a description word,
    a poor man's BM25F), then brand, categories and up to 2,000 characters of description."""
    return item.title + "\n" + item.text(max_description_chars=2000)


@dataclass
class SearchHit:
    item: Item
    score: float  # fused RRF score (higher is better)
    dense_rank: int | None = None
    lexical_rank: int | None = None
    dense_score: float | None = None
    lexical_score: float | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.item.id,
            "title": self.item.title,
            "brand": self.item.brand,
            "category": self.item.category,
            "price": self.item.price,
            "score": round(self.score, 6),
            "dense_rank": self.dense_rank,
            "lexical_rank": self.lexical_rank,
        }


@dataclass
class HybridSearcher:
    catalog: Catalog
    index: CatalogIndex
    embedder: Embedder
    lexical: LexicalIndex = field(init=False)
    dense_weight: float = 1.0
    lexical_weight: float = 1.0

    def __post_init__(self) -> None:
        items = list(self.catalog.items.values())
        self.lexical = LexicalIndex([it.id for it in items], [lexical_text(it) for it in items])
        # Column arrays so that a filter mask over 50k items is a few numpy operations.
        self._position = {it.id: i for i, it in enumerate(items)}
        self._brand = np.array([it.brand.casefold() for it in items], dtype=object)
        self._price = np.array([np.nan if it.price is None else it.price for it in items], dtype=np.float64)
        # Out-of-stock items stay in the catalog (a shopper's history may name them) but are
        # never returned: every query's mask leaves them out.
        self._available = np.array([it.available for it in items], dtype=bool)
        self._all_available = bool(self._available.all())
        self._matrix: np.ndarray | None = None  # loaded on the first selective filter (`_vectors`)
        self._record_item = np.zeros(0, dtype=np.int64)
        self._by_category: dict[str, list[int]] = {}
        self._by_attribute: dict[tuple[str, str], list[int]] = {}
        for i, it in enumerate(items):
            for cat in {c.casefold() for c in it.categories}:
                self._by_category.setdefault(cat, []).append(i)
            for name, value in it.attributes:
                for v in attribute_values(value):
                    self._by_attribute.setdefault((name, v), []).append(i)

    def _mask(self, filters: SearchFilters | None, exclude: set[str]) -> np.ndarray | None:
        """Boolean per item, equivalent to `SearchFilters.matches` and in stock; None = everything."""
        if (filters is None or filters.is_empty()) and not exclude and self._all_available:
            return None
        mask = self._available.copy()
        if filters is not None:
            for name, value in filters.attributes:
                has = np.zeros_like(mask)
                has[self._by_attribute.get((name.casefold(), value.casefold()), [])] = True
                mask &= has
            if filters.brands:
                mask &= np.isin(self._brand, [b.casefold() for b in filters.brands])
            if filters.exclude_brands:
                mask &= ~np.isin(self._brand, [b.casefold() for b in filters.exclude_brands])
            if filters.categories:
                in_cat = np.zeros_like(mask)
                for cat in filters.categories:
                    in_cat[self._by_category.get(cat.casefold(), [])] = True
                mask &= in_cat
            if filters.price_min is not None or filters.price_max is not None:
                with np.errstate(invalid="ignore"):
                    mask &= ~np.isnan(self._price)
                    if filters.price_min is not None:
                        mask &= self._price >= filters.price_min
                    if filters.price_max is not None:
                        mask &= self._price <= filters.price_max
        mask[[self._position[i] for i in exclude if i in self._position]] = False
        return mask

    def allowed_mask(self, filters: SearchFilters | None, exclude: Iterable[str] = ()) -> np.ndarray | None:
        """Bool per item (in `self.lexical.ids` order): passes the filters, not excluded, in stock; None = all."""
        return self._mask(filters, set(exclude))

    def dense(self, vector: np.ndarray, n: int, filters: SearchFilters | None = None, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """Nearest items to an embedding as (item id, cosine), best first, honouring filters."""
        mask = self._mask(filters, set(exclude))
        if mask is None:
            return [(i, s) for i, s in self.index.query(vector, n) if i in self._position][:n]
        allowed = int(mask.sum())
        if allowed == 0:
            return []
        share = allowed / len(mask)
        if share >= BROAD_FILTER_SHARE:
            # HNSW returns the nearest items whatever the filter; fetch enough that about twice n
            # survive it, and fall back to the exact path in the rare case too few did.
            fetch = min(len(mask), int(np.ceil(2 * n / share)) + 1)
            hits = [(i, s) for i, s in self.index.query(vector, fetch) if i in self._position and mask[self._position[i]]]
            if len(hits) >= min(n, allowed):
                return hits[:n]
        return self._exact(vector, n, mask)

    def dense_chroma_where(self, vector: np.ndarray, n: int, filters: SearchFilters | None = None, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """The same answer through Chroma's own metadata filter (reference for tests and bench)."""
        exclude = set(exclude)
        where = filters.to_chroma_where() if filters else None
        hits = self.index.query(vector, n + len(exclude), where=where)
        return [(i, s) for i, s in hits if i not in exclude and i in self._position][:n]

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stored vector (title and description records) with its item's catalog position."""
        if self._matrix is None:
            record_items, matrix = self.index.all_vectors()
            keep = [row for row, item_id in enumerate(record_items) if item_id in self._position]
            self._record_item = np.array([self._position[record_items[row]] for row in keep], dtype=np.int64)
            matrix = matrix[keep]
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            self._matrix = matrix / np.where(norms == 0, 1.0, norms)
        return self._matrix, self._record_item

    def _exact(self, vector: np.ndarray, n: int, mask: np.ndarray) -> list[tuple[str, float]]:
        """Exact top-n over the allowed items, an item scoring its best record."""
        matrix, record_item = self._vectors()
        rows = np.flatnonzero(mask[record_item])
        if rows.size == 0:
            return []
        # torch, not numpy: numpy's BLAS has its own thread pool, whose threads keep spinning after a
        # large product and then slow the next query embedding (torch's pool) ~2x on 2 cores.
        import torch

        scores = torch.mv(torch.from_numpy(matrix[rows]), torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))).numpy()
        # An item has at most two records, so the best 2n records hold the best n items.
        top = min(rows.size, 2 * n)
        best = np.argpartition(-scores, top - 1)[:top] if top < rows.size else np.arange(rows.size)
        best = best[np.argsort(-scores[best], kind="stable")]
        out: dict[str, float] = {}
        for j in best:
            item_id = self.lexical.ids[record_item[rows[j]]]
            if item_id not in out:
                out[item_id] = float(scores[j])
                if len(out) == n:
                    break
        return list(out.items())

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        filters: SearchFilters | None = None,
        exclude_ids: Iterable[str] = (),
        depth: int | None = None,
    ) -> list[SearchHit]:
        if not query or not query.strip():
            raise ValueError("empty query: say what you are looking for")
        exclude = set(exclude_ids)
        depth = depth or max(2 * k, 50)
        dense = self.dense(self.embedder.encode_one(query), depth, filters, exclude)
        lexical = self.lexical.top(query, depth, mask=self._mask(filters, exclude))
        return self._fuse(dense, lexical, k)

    def similar(self, item_ids: Sequence[str], k: int = 10, *, filters: SearchFilters | None = None, exclude_ids: Iterable[str] = ()) -> list[SearchHit]:
        """Items closest to the mean embedding of `item_ids` (a history or "more like this"); an
        item named twice (a re-purchase) counts once."""
        vectors = self.index.embeddings(list(dict.fromkeys(item_ids)))
        if not vectors:
            return []
        centre = np.mean(list(vectors.values()), axis=0)
        centre /= np.linalg.norm(centre) or 1.0
        dense = self.dense(centre, k, filters, set(exclude_ids) | set(item_ids))
        return self._fuse(dense, [], k)

    def _fuse(self, dense: list[tuple[str, float]], lexical: list[tuple[str, float]], k: int) -> list[SearchHit]:
        hits: dict[str, SearchHit] = {}
        for rank, (item_id, score) in enumerate(dense, start=1):
            hit = hits.setdefault(item_id, SearchHit(self.catalog.items[item_id], 0.0))
            hit.score += self.dense_weight / (RRF_K + rank)
            hit.dense_rank, hit.dense_score = rank, score
        for rank, (item_id, score) in enumerate(lexical, start=1):
            hit = hits.setdefault(item_id, SearchHit(self.catalog.items[item_id], 0.0))
            hit.score += self.lexical_weight / (RRF_K + rank)
            hit.lexical_rank, hit.lexical_score = rank, score
        # Ties (e.g. one list's #1 vs the other's #1) go to the lexical hit: an exact token match
        # such as a model number is stronger evidence than a near neighbour in embedding space.
        inf = float("inf")
        ranked = sorted(hits.values(), key=lambda h: (-h.score, h.lexical_rank or inf, h.dense_rank or inf, h.item.id))
        return ranked[:k]


def open_searcher(settings: StoreConfig, catalog_name: str | None = None, *, build: bool = True, progress: bool = True, catalog: Catalog | None = None) -> HybridSearcher:
    """Load a catalog (with its generated-copy overlay, see retrieval/overlay.py) and its Chroma
    index, building or completing the index when `build`."""
    from retrieval.overlay import load_catalog_with_overlay

    name = catalog.name if catalog is not None else catalog_name or settings.catalog
    embedder = Embedder.from_settings(settings)
    index = CatalogIndex(make_chroma_client(settings), name, embedder)
    if not build and index.records() == 0:  # checked before the catalog is read: a refusal stays instant
        raise VectorStoreError(f"no index for catalog {name!r}; run: aisle index --catalog {name}")
    catalog = catalog or load_catalog_with_overlay(settings, name)
    if build:
        index.sync(catalog, progress=progress)
    return HybridSearcher(catalog, index, embedder)
