"""Hybrid search: dense (Chroma) + lexical (BM25), fused by reciprocal rank fusion, with filters.

Filters are applied inside both retrievers (Chroma `where` and a BM25 mask) rather than after
fusion, so a filtered query still returns `k` items when `k` matching items exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.settings import Settings
from retrieval.catalog import Catalog, Item, load_catalog
from retrieval.embed import Embedder
from retrieval.index import CatalogIndex, VectorStoreError, make_chroma_client
from retrieval.lexical import LexicalIndex

RRF_K = 60  # the constant from Cormack et al. (2009); dampens the weight of top ranks


@dataclass(frozen=True)
class SearchFilters:
    """Constraints on items. Matching is case-insensitive; categories match any level of the path.

    A price bound excludes items whose price is unknown (we cannot claim they fit the budget)."""

    brands: tuple[str, ...] = ()
    exclude_brands: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None

    def __post_init__(self) -> None:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min ({self.price_min}) is greater than price_max ({self.price_max})")

    def is_empty(self) -> bool:
        return not (self.brands or self.exclude_brands or self.categories) and self.price_min is None and self.price_max is None

    def matches(self, item: Item) -> bool:
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
        self._by_category: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            for cat in {c.casefold() for c in it.categories}:
                self._by_category.setdefault(cat, []).append(i)

    def _mask(self, filters: SearchFilters | None, exclude: set[str]) -> np.ndarray | None:
        """Boolean per item (BM25 side), equivalent to `SearchFilters.matches`."""
        if (filters is None or filters.is_empty()) and not exclude:
            return None
        mask = np.ones(len(self.lexical.ids), dtype=bool)
        if filters is not None:
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

    def dense(self, vector: np.ndarray, n: int, filters: SearchFilters | None = None, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """Nearest items to an embedding. Over-fetches by the exclusion count, then drops excluded."""
        exclude = set(exclude)
        where = filters.to_chroma_where() if filters else None
        hits = self.index.query(vector, n + len(exclude), where=where)
        return [(i, s) for i, s in hits if i not in exclude and i in self.catalog.items][:n]

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
        """Items closest to the mean embedding of `item_ids` (a history or "more like this")."""
        vectors = self.index.embeddings(list(item_ids))
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


def open_searcher(settings: Settings, catalog_name: str | None = None, *, build: bool = True, progress: bool = True, catalog: Catalog | None = None) -> HybridSearcher:
    """Load a catalog and its Chroma index, building or completing the index when `build`."""
    catalog = catalog or load_catalog(catalog_name or settings.catalog, settings.data_dir)
    embedder = Embedder(settings.embed_model, batch_size=settings.embed_batch_size)
    index = CatalogIndex(make_chroma_client(settings), catalog.name, embedder)
    if build:
        index.sync(catalog, progress=progress)
    elif index.count() == 0:
        raise VectorStoreError(f"no index for catalog {catalog.name!r}; run: aisle index --catalog {catalog.name}")
    return HybridSearcher(catalog, index, embedder)
