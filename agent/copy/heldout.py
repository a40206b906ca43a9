"""The held-out items of a catalog's copy evaluation: ONE function picks them, for both
`aisle eval copy` (the items it evaluates) and `aisle train copywriter` (the items it never trains
on), so the fine-tuned copywriter is always judged on items it never saw.

An item is eligible when it has a real human description (`eligible`); `select_eval_items` draws a
seeded sample of N of them from the sorted ids. `exclude` removes items before sampling (e.g. the
items of another catalog with the same title, for a cross-catalog eval).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Collection, Iterable

from retrieval.catalog import Catalog, Item
from retrieval.collab import id_sort_key

QUERY_WORDS = 12
MIN_QUERY_WORDS = 6
MIN_DESCRIPTION_WORDS = 25

_WORDS = re.compile(r"[A-Za-z0-9][A-Za-z0-9'&.-]*[A-Za-z0-9]|[A-Za-z0-9]")


def description_query(item: Item, n_words: int = QUERY_WORDS) -> str:
    """A shopper-like query from the human description: its first words that are not title words.

    Title words are removed so the query does not simply re-type the title (which the cold item
    still has, so it would be found without any copy)."""
    title_words = {w.lower() for w in _WORDS.findall(item.title)}
    words = [w for w in _WORDS.findall(item.description) if w.lower() not in title_words]
    return " ".join(words[:n_words])


def eligible(item: Item) -> bool:
    """A real description: long enough, not a copy of the title, and a usable query remains."""
    desc = item.description.strip()
    if len(desc.split()) < MIN_DESCRIPTION_WORDS:
        return False
    if desc.lower().startswith(item.title.lower()) and len(desc) < len(item.title) + 40:
        return False
    return len(description_query(item).split()) >= MIN_QUERY_WORDS


def select_eval_items(catalog: Catalog, n: int, seed: int, exclude: Collection[str] = ()) -> list[Item]:
    """N eligible items (not in `exclude`), sampled with `seed` from the sorted ids (same seed,
    same sample). With no `exclude` this is the sample `aisle eval copy` has always drawn."""
    skip = set(exclude)
    pool = sorted((i for i, it in catalog.items.items() if i not in skip and eligible(it)), key=id_sort_key)
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} items of {catalog.name} have a usable description; ask for --items {len(pool)} or fewer")
    rng = random.Random(seed)
    return [catalog.items[i] for i in sorted(rng.sample(pool, n), key=id_sort_key)]


def norm_title(title: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", (title or "").lower()))


def items_with_titles_of(catalog: Catalog, other: Catalog) -> set[str]:
    """Ids of `catalog` whose (normalised) title is also a title of `other`."""
    titles = {norm_title(it.title) for it in other.items.values()}
    titles.discard("")
    return {i for i, it in catalog.items.items() if norm_title(it.title) in titles}


def ids_hash(ids: Iterable[str]) -> str:
    """Order-independent hash of a set of item ids (recorded in adapter metadata and eval reports)."""
    return hashlib.sha256("\n".join(sorted(set(ids), key=id_sort_key)).encode()).hexdigest()[:16]
