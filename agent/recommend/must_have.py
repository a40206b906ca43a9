"""Must-haves: items whose record states what the shopper asked for come first.

A stable partition of the ranked candidates, applied before the top k is cut: items stating more
of the asked features first, the ranker's order inside each group. A ranker (an LLM or the
retriever) may weigh "quiet" below "paper shredder"; a shopper who said "quiet" would not.
The features no candidate states are returned, so the reply can say which part was not met.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from agent.facts import has_feature
from retrieval.catalog import Item

T = TypeVar("T")


def lift(ranked: Sequence[T], must_have: Sequence[str], item_of: Callable[[T], Item]) -> tuple[list[T], list[str]]:
    """(`ranked` with the items that state more must-haves first, the must-haves none states)."""
    if not must_have or not ranked:
        return list(ranked), []
    met = [[f for f in must_have if has_feature(item_of(r), f)] for r in ranked]
    order = sorted(range(len(ranked)), key=lambda i: -len(met[i]))
    return [ranked[i] for i in order], [f for f in must_have if not any(f in m for m in met)]


def unmet(items: Sequence[Item], must_have: Sequence[str]) -> list[str]:
    """The must-haves that none of `items` states."""
    return [f for f in must_have if not any(has_feature(item, f) for item in items)]
