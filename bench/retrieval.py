"""Retrieval benchmark: indexing speed of the embedding backends side by side, embedding throughput
and top-50 query latency, with and without filters, at the real catalog size and at a 50k-item
scale point (real items replicated under new ids).

    python bench/retrieval.py [--index-items 600] [--rounds 2] [--index-only] [--scale 50000] [--queries 200]

The indexing comparison builds fresh collections of the same first N items through
`CatalogIndex.sync` (embedding + Chroma upserts) with the old path (the torch backend) and the new
path (`AISLE_EMBED_BACKEND`, default onnx-int8), alternating rounds so that both see the same load,
and prints items/s of each and their ratio. The new path's one-time model conversion happens in the
throw-away home first and is timed separately.

Everything runs in a throw-away AISLE_HOME, so the user's index is untouched.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.settings import Settings  # noqa: E402
from retrieval.catalog import Catalog, Item, LoadReport  # noqa: E402
from retrieval.embed import Embedder  # noqa: E402
from retrieval.index import CatalogIndex, content_hash, item_metadata, make_chroma_client  # noqa: E402
from retrieval.search import HybridSearcher, SearchFilters  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def queries_for(catalog: Catalog, n: int, seed: int = 0) -> list[str]:
    """Shopper-like queries: the first words of random titles and category names."""
    rng = random.Random(seed)
    items = list(catalog.items.values())
    out = []
    for _ in range(n):
        it = rng.choice(items)
        words = it.title.split()
        out.append(" ".join(words[: rng.randint(2, 5)]) if rng.random() < 0.7 else f"{it.category} for the office")
    return out


def time_queries(searcher: HybridSearcher, queries: list[str], filters_for) -> dict[str, float]:
    """Per query: embedding, dense side, BM25 and end-to-end times (ms); plus, for reference, the
    dense side through Chroma's own `where` filter and how many of its top 50 the fast path shares."""
    total, embed, dense, lexical, where, overlap = [], [], [], [], [], []
    for q in queries:
        f = filters_for(q)
        t0 = time.perf_counter()
        vec = searcher.embedder.encode_one(q)
        t1 = time.perf_counter()
        fast = searcher.dense(vec, 50, f)
        t2 = time.perf_counter()
        searcher.lexical.top(q, 50, mask=searcher._mask(f, set()))
        t3 = time.perf_counter()
        searcher.search(q, 50, filters=f)
        t4 = time.perf_counter()
        ref = searcher.dense_chroma_where(vec, 50, f)
        t5 = time.perf_counter()
        embed.append((t1 - t0) * 1e3)
        dense.append((t2 - t1) * 1e3)
        lexical.append((t3 - t2) * 1e3)
        total.append((t4 - t3) * 1e3)
        where.append((t5 - t4) * 1e3)
        if ref:
            overlap.append(len({i for i, _ in fast} & {i for i, _ in ref}) / len(ref))
    return {
        "p50": pct(total, 50), "p95": pct(total, 95),
        "embed_p50": pct(embed, 50), "dense_p50": pct(dense, 50), "dense_p95": pct(dense, 95),
        "bm25_p50": pct(lexical, 50), "bm25_p95": pct(lexical, 95),
        "where_p50": pct(where, 50), "where_p95": pct(where, 95),
        "overlap": statistics.mean(overlap) if overlap else float("nan"),
    }


def replicate(catalog: Catalog, vectors: dict[str, np.ndarray], target: int, seed: int = 0) -> tuple[Catalog, dict[str, np.ndarray]]:
    """Copies of real items under new ids; vectors get small noise so HNSW sees distinct points."""
    rng = np.random.default_rng(seed)
    base = list(catalog.items.values())
    items: dict[str, Item] = dict(catalog.items)
    vecs = dict(vectors)
    copy = 0
    while len(items) < target:
        copy += 1
        for it in base:
            if len(items) >= target:
                break
            new_id = f"{it.id}~{copy}"
            items[new_id] = dataclasses.replace(it, id=new_id)
            v = vectors[it.id] + rng.normal(0, 0.02, size=vectors[it.id].shape).astype(np.float32)
            vecs[new_id] = v / np.linalg.norm(v)
    return Catalog(f"{catalog.name}-x{target}", items, LoadReport(catalog.name, loaded=len(items))), vecs


def load_vectors(index: CatalogIndex, catalog: Catalog, vectors: dict[str, np.ndarray]) -> None:
    ids = list(catalog.items)
    for start in range(0, len(ids), 2000):
        chunk = ids[start : start + 2000]
        index.collection.upsert(
            ids=chunk,
            embeddings=np.stack([vectors[i] for i in chunk]),
            metadatas=[{**item_metadata(catalog.items[i]), "content_hash": content_hash(catalog.items[i], index.embedder.model_id)} for i in chunk],
        )


def load_catalog(settings: Settings, name: str) -> Catalog:
    try:  # the catalog registry (retrieval/registry.py), where there is one
        from retrieval.registry import load_catalog as registry_load
    except ImportError:
        from retrieval.catalog import load_catalog as files_load

        return files_load(name, settings.data_dir)
    return registry_load(settings, name)


def compare_indexing(settings: Settings, catalog: Catalog, n_items: int, rounds: int) -> Embedder:
    """Old path (torch) vs new path (settings.embed_backend): the same first `n_items` items through
    `CatalogIndex.sync` into fresh collections, rounds alternating old/new. Returns the new embedder."""
    subset = Catalog(catalog.name, dict(list(catalog.items.items())[:n_items]), catalog.report)
    n = len(subset)
    old = Embedder(settings.embed_model, batch_size=settings.embed_batch_size, backend="torch")
    t = time.perf_counter()
    new = Embedder.from_settings(settings)
    print(f"new path: {new.backend} ({new.model_id}); model conversion + load in the fresh home: {time.perf_counter() - t:.1f} s (once; cached at {new.onnx_path})")
    warm = [it.text() for it in list(subset.items.values())[:16]]
    old.encode(warm), new.encode(warm)
    client = make_chroma_client(settings)
    seconds: dict[str, list[float]] = {"old": [], "new": []}
    indexes: dict[str, CatalogIndex] = {}
    for r in range(rounds):
        for label, embedder in (("old", old), ("new", new)):
            index = CatalogIndex(client, f"bench-index-r{r}", embedder)
            t = time.perf_counter()
            report = index.sync(subset, progress=False)
            seconds[label].append(time.perf_counter() - t)
            assert report.added == n and index.count() == n, report
            indexes[label] = index
            print(f"  round {r + 1} {label}: {n / seconds[label][-1]:.1f} items/s")
    old_rate, new_rate = n * rounds / sum(seconds["old"]), n * rounds / sum(seconds["new"])
    ids = list(subset.items)
    a, b = indexes["old"].embeddings(ids), indexes["new"].embeddings(ids)
    cosine = np.array([float(a[i] @ b[i]) for i in ids])
    print(f"\nindexing {n} items of {catalog.name} through CatalogIndex.sync (embedding + Chroma upserts), {rounds} round(s) each:")
    print(f"  old path, torch ({old.model_id}), batch {old.batch_size}: {old_rate:.1f} items/s")
    print(f"  new path, {new.backend} ({new.model_id}), batch {new.batch_size}: {new_rate:.1f} items/s")
    print(f"  new/old = {new_rate / old_rate:.1f}x")
    print(f"  title vectors new vs old: cosine min {cosine.min():.4f}, mean {cosine.mean():.4f}")
    return new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", default="amazon-office-2014")
    ap.add_argument("--scale", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--embed-items", type=int, default=512, help="items embedded for the throughput figure")
    ap.add_argument("--index-items", type=int, default=600, help="items indexed by each path in the side-by-side comparison (0: skip it)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating old/new indexing rounds")
    ap.add_argument("--index-only", action="store_true", help="only the side-by-side indexing comparison (no latency part)")
    args = ap.parse_args()

    import onnxruntime
    import torch

    print(f"torch threads: {torch.get_num_threads()}; onnxruntime {onnxruntime.__version__}")
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        catalog = load_catalog(settings, args.catalog)
        embedder = compare_indexing(settings, catalog, args.index_items, args.rounds) if args.index_items else Embedder.from_settings(settings)
        if args.index_only:
            return

        sample = [it.text() for it in list(catalog.items.values())[: args.embed_items]]
        embedder.encode(sample[:32])  # warm-up
        t = time.perf_counter()
        embedder.encode(sample)
        rate = len(sample) / (time.perf_counter() - t)
        print(f"embedding throughput: {rate:.1f} items/s ({len(sample)} item texts, batch {embedder.batch_size})")

        t = time.perf_counter()
        index = CatalogIndex(make_chroma_client(settings), catalog.name, embedder)
        index.sync(catalog, progress=True)
        print(f"index build, {len(catalog)} items: {time.perf_counter() - t:.1f} s")

        queries = queries_for(catalog, args.queries)
        brands = [b for b, _ in __import__("collections").Counter(it.brand for it in catalog.items.values() if it.brand).most_common(5)]
        no_filter = lambda q: None  # noqa: E731
        with_filter = lambda q: SearchFilters(brands=tuple(brands[:3]), exclude_brands=(brands[4],))  # noqa: E731
        cats = [c for c, _ in __import__("collections").Counter(it.category for it in catalog.items.values()).most_common(3)]
        cat_filter = lambda q: SearchFilters(categories=tuple(cats))  # noqa: E731

        rows = []
        real = HybridSearcher(catalog, index, embedder)
        for q in queries[:10]:
            real.search(q, 50)  # warm-up
        for label, ff in (("no filter", no_filter), ("brand filter", with_filter), ("category filter", cat_filter)):
            rows.append((len(catalog), label, time_queries(real, queries, ff)))

        vectors = index.embeddings(list(catalog.items))
        big, big_vectors = replicate(catalog, vectors, args.scale)
        t = time.perf_counter()
        big_index = CatalogIndex(index.client, big.name, embedder)
        load_vectors(big_index, big, big_vectors)
        big_searcher = HybridSearcher(big, big_index, embedder)
        print(f"{args.scale}-item store load (vectors given) + BM25 build: {time.perf_counter() - t:.1f} s")
        for q in queries[:10]:
            big_searcher.search(q, 50)
        for label, ff in (("no filter", no_filter), ("brand filter", with_filter), ("category filter", cat_filter)):
            rows.append((len(big), label, time_queries(big_searcher, queries, ff)))

    print()
    print("top-50 hybrid search latency (ms), end to end = query embedding + dense + BM25 + fusion")
    print("dense = retrieval.search (HNSW, or exact scoring of the allowed items for a selective filter);")
    print("chroma where = the same dense query through Chroma's metadata filter, for reference; overlap = share of its top 50 the dense side also returns")
    print(f"{'items':>7} {'filters':<16} {'p50':>6} {'p95':>6} | {'embed p50':>9} {'dense p50/p95':>14} {'bm25 p50/p95':>13} | {'chroma where p50/p95':>20} {'overlap':>7}")
    for n, label, r in rows:
        print(f"{n:>7} {label:<16} {r['p50']:6.1f} {r['p95']:6.1f} | {r['embed_p50']:9.1f} {r['dense_p50']:6.1f}/{r['dense_p95']:<7.1f} {r['bm25_p50']:6.1f}/{r['bm25_p95']:<6.1f} | "
              f"{r['where_p50']:9.1f}/{r['where_p95']:<10.1f} {r['overlap']:7.1%}")  # fmt: skip
    big_rows = [r for n, _, r in rows if n == args.scale]
    worst = max(r["p95"] for r in big_rows)
    print(f"\nworst p95 at {args.scale} items: {worst:.1f} ms (target < 20 ms): {'MET' if worst < 20 else 'NOT MET'}")
    print(f"p95 ratio {args.scale} items / {len(catalog)} items (no filter): {big_rows[0]['p95'] / rows[0][2]['p95']:.2f}x")
    for n, label, r in rows:
        if label != "no filter":
            print(f"dense side, {label} at {n} items: Chroma where p95 / ours p95 = {r['where_p95'] / r['dense_p95']:.1f}x")


if __name__ == "__main__":
    main()
