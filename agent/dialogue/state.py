"""What a session remembers between turns.

The state is what the shopper has told us so far (category, brands wanted/avoided, price bounds,
must-have features, use case, the words describing the need) plus what we showed and how they
reacted (shown, liked, rejected, the item in focus). It is plain data that round-trips through
JSON, so the session store can persist it. Only `agent.dialogue.policy.apply` changes the
constraints.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from agent.text import money, stems
from retrieval.search import SearchFilters

MAX_NEED_PARTS = 4  # how many of the user's product phrases make up the retrieval query
MAX_RECENT = 6  # conversation messages kept in the state for prompts
MAX_RECENT_CHARS = 300  # per remembered message


class DialogueState(BaseModel):
    """Everything a session remembers between turns (JSON-serialisable)."""

    catalog: str
    need: list[str] = Field(default_factory=list)  # the shopper's own product words, per turn
    head: str | None = None  # the product noun ("shoes" in "running shoes"): shown items must mention it
    categories: list[str] = Field(default_factory=list)
    brands: list[str] = Field(default_factory=list)
    avoid_brands: list[str] = Field(default_factory=list)
    price_min: float | None = None
    price_max: float | None = None
    features: list[str] = Field(default_factory=list)
    use_case: str | None = None
    similar_to: list[str] = Field(default_factory=list)
    shown: list[str] = Field(default_factory=list)
    last_shown: list[str] = Field(default_factory=list)
    liked: list[str] = Field(default_factory=list)
    # What the shopper bought before this conversation (the shop's record, oldest first): it orders
    # the search hits through the ranking stage (agent/recommend/ltr.py), like the session's likes.
    history: list[str] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)
    focus: str | None = None  # the item the conversation is about ("why that one?")
    recent: list[dict[str, str]] = Field(default_factory=list)  # last few messages, for prompts
    turns: int = 0

    def filters(self, *, with_categories: bool = True) -> SearchFilters | None:
        """The state's hard constraints as search filters (None when there are none)."""
        lo, hi = self.price_min, self.price_max
        if lo is not None and hi is not None and lo > hi:
            lo = None
        f = SearchFilters(
            brands=tuple(self.brands),
            exclude_brands=tuple(self.avoid_brands),
            categories=tuple(self.categories) if with_categories else (),
            price_min=lo,
            price_max=hi,
        )
        return None if f.is_empty() else f

    def query(self) -> str | None:
        """The retrieval query: the shopper's product phrases, plus any feature they do not contain.

        The use case is not appended: it comes from the same words ("for my printer")."""
        parts = list(self.need)
        have = set(stems(" ".join(parts)))
        for feat in self.features:
            if not set(stems(feat)) <= have:
                parts.append(feat)
        text = " ".join(p for p in parts if p).strip()
        return text or None

    def has_constraints(self) -> bool:
        return bool(self.need or self.categories or self.brands or self.similar_to or self.features)

    def describe(self) -> str:
        """One human line of the active constraints, e.g. 'stapler · under $20 · not Swingline'."""
        bits: list[str] = []
        if self.need:
            bits.append("“" + " ".join(self.need[-2:]) + "”")
        if self.categories:
            bits.append("in " + " or ".join(self.categories))
        if self.brands:
            bits.append("by " + " or ".join(self.brands))
        if self.avoid_brands:
            bits.append("not " + ", ".join(self.avoid_brands))
        if self.price_min is not None and self.price_max is not None:
            bits.append(f"{money(self.price_min)}–{money(self.price_max)}")
        elif self.price_max is not None:
            bits.append(f"up to {money(self.price_max)}")
        elif self.price_min is not None:
            bits.append(f"from {money(self.price_min)}")
        if self.similar_to:
            bits.append("similar to an item you picked")
        return " · ".join(bits)

    def remember(self, role: str, content: str) -> None:
        self.recent.append({"role": role, "content": content[:MAX_RECENT_CHARS]})
        del self.recent[:-MAX_RECENT]

    def reset(self) -> None:
        """Forget the constraints and history of this conversation, except what the shopper rejected
        and what they bought before it.

        The UI promises a rejected item "won't be shown again", and starting a new search is no
        change of mind about it (the thumbs down also stays in the session's feedback). The
        session id and the turn count stay too."""
        fresh = DialogueState(catalog=self.catalog, turns=self.turns, rejected=list(self.rejected), history=list(self.history))
        for name in DialogueState.model_fields:
            setattr(self, name, getattr(fresh, name))
