"""The fast tier: logic tests in milliseconds, no LLM and no shared data.

- `ScriptedEngine`: an `LLMEngine` with no model. It answers from a script (fixed values or
  callables) and records every call, so tests can play a well-behaved model, a broken one, or a
  compromised one that returns an attacker's text.
- `make_catalog`: a small catalog built inside the test from plain rows.
- `tiny_agent`: the real `Agent` over a real embedded Chroma index of such a catalog (the packaged
  MiniLM embeds a few dozen items in well under a second), with the scripted engine.

Everything under tests/fast is marked `fast`; `pytest -m fast` runs only this tier.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.engines.base import LLMEngine, Message
from agent.settings import REPO_ROOT, Settings, force_offline
from retrieval.catalog import Catalog, Item, LoadReport, clean_text
from retrieval.registry import FeedSpec

force_offline()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fast)


class ScriptedEngine(LLMEngine):
    """An engine that never loads a model. Each answer is a value or a callable of the call's
    arguments; an unscripted call returns a neutral answer (uniform label probabilities, "" text)."""

    name = "scripted"
    model_id = "scripted"

    def __init__(
        self,
        *,
        text: str | Callable[[Sequence[Message]], str] = "",
        json_answer: Any = None,
        score_answer: Any = None,
        raise_error: Exception | None = None,
    ) -> None:
        self.text = text
        self.json_answer = json_answer
        self.score_answer = score_answer
        self.raise_error = raise_error
        self.calls: list[tuple[str, Any]] = []
        self.banned: list[Sequence[Sequence[str]] | None] = []  # the `banned` argument of every batch call

    def _reply(self, messages: Sequence[Message]) -> str:
        if self.raise_error is not None:
            raise self.raise_error
        return self.text(messages) if callable(self.text) else self.text

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        self.calls.append(("chat", messages))
        return self._reply(messages)

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> Iterator[str]:
        self.calls.append(("stream", messages))
        yield self._reply(messages)

    def chat_json(self, messages: Sequence[Message], schema: dict[str, Any], *, max_tokens: int = 256) -> Any:
        self.calls.append(("chat_json", messages))
        if self.raise_error is not None:
            raise self.raise_error
        return self.json_answer(messages, schema) if callable(self.json_answer) else self.json_answer

    def batch(
        self, conversations: Sequence[Sequence[Message]], *, max_tokens: int = 256, temperature: float = 0.0, banned: Sequence[Sequence[str]] | None = None
    ) -> list[str]:
        self.calls.append(("batch", conversations))
        self.banned.append(banned)
        return [self._reply(m) for m in conversations]

    def score_choices(self, messages: Sequence[Message], choices: Sequence[str]) -> dict[str, float]:
        self.calls.append(("score_choices", messages))
        if self.raise_error is not None:
            raise self.raise_error
        if self.score_answer is None:
            return {c: 1.0 / len(choices) for c in choices}
        return self.score_answer(messages, choices) if callable(self.score_answer) else self.score_answer


def make_catalog(rows: Sequence[dict[str, Any]], name: str = "tiny") -> Catalog:
    """A catalog from plain rows: {id, title, description?, brand?, categories?, price?}, each text
    field cleaned the way the catalog loaders clean imported text (`retrieval.catalog.clean_text`)."""
    items: dict[str, Item] = {}
    for row in rows:
        cats = row.get("categories", ())
        items[str(row["id"])] = Item(
            id=str(row["id"]),
            title=clean_text(row["title"]),
            description=clean_text(row.get("description", "")),
            brand=clean_text(row.get("brand", "")),
            categories=tuple(clean_text(c) for c in (cats.split(" > ") if isinstance(cats, str) else cats)),
            price=row.get("price"),
            source=dict(row),
        )
    return Catalog(name, items, LoadReport(name, loaded=len(items)))


# A small shop with prices, brands and a few features worth asking for.
SHOP_ROWS: list[dict[str, Any]] = [
    {"id": "s1", "title": "Swingline Heavy Duty Stapler, 100 sheets", "brand": "Swingline", "categories": "Office > Staplers", "price": 39.99, "description": "A heavy duty metal stapler for thick stacks."},
    {"id": "s2", "title": "Bostitch Quiet Desktop Stapler", "brand": "Bostitch", "categories": "Office > Staplers", "price": 19.99, "description": "A quiet stapler with a soft press, 20 sheets."},
    {"id": "s3", "title": "Swingline Compact Mini Stapler", "brand": "Swingline", "categories": "Office > Staplers", "price": 6.49, "description": "A small stapler for the pencil case."},
    {"id": "s4", "title": "Rapid Electric Stapler", "brand": "Rapid", "categories": "Office > Staplers", "price": 54.00, "description": "Electric stapler, 30 sheets, AC powered."},
    {"id": "s5", "title": "PaperPro Spring Powered Stapler", "brand": "PaperPro", "categories": "Office > Staplers", "price": 24.50, "description": "Spring powered stapler that needs less force."},
    {"id": "p1", "title": "Pilot G2 Gel Pens, Black, 12 pack", "brand": "Pilot", "categories": "Office > Pens", "price": 12.99, "description": "Retractable gel ink pens in black."},
    {"id": "p2", "title": "Uni-ball Signo Gel Pens, Blue", "brand": "Uni-ball", "categories": "Office > Pens", "price": 9.49, "description": "Smooth gel pens with blue ink."},
    {"id": "p3", "title": "Bic Cristal Ballpoint Pens, Black, 10 pack", "brand": "Bic", "categories": "Office > Pens", "price": 3.99, "description": "Everyday ballpoint pens."},
    {"id": "p4", "title": "Pentel EnerGel Gel Pens, Red", "brand": "Pentel", "categories": "Office > Pens", "price": 8.75, "description": "Quick drying gel ink, red."},
    {"id": "d1", "title": "Fellowes Cross-Cut Paper Shredder, 8 sheet", "brand": "Fellowes", "categories": "Office > Shredders", "price": 79.99, "description": "Cross-cut shredder for the home office."},
    {"id": "d2", "title": "AmazonBasics Quiet Paper Shredder, 12 sheet", "brand": "AmazonBasics", "categories": "Office > Shredders", "price": 59.99, "description": "A quiet cross-cut shredder with a 5 gallon bin."},
    {"id": "d3", "title": "Aurora Strip-Cut Paper Shredder, 6 sheet", "brand": "Aurora", "categories": "Office > Shredders", "price": 29.99, "description": "Strip-cut shredder for occasional use."},
    {"id": "d4", "title": "Fellowes Micro-Cut Shredder, 10 sheet", "brand": "Fellowes", "categories": "Office > Shredders", "price": 129.00, "description": "Micro-cut security shredder, jam proof."},
    {"id": "l1", "title": "Brother P-touch Label Maker", "brand": "Brother", "categories": "Office > Label Makers", "price": 29.99, "description": "Handheld label maker with a QWERTY keyboard."},
    {"id": "l2", "title": "DYMO LabelManager 160 Label Maker", "brand": "DYMO", "categories": "Office > Label Makers", "price": 24.99, "description": "Portable label maker, one-touch fonts."},
    {"id": "l3", "title": "Brother PT-D210 Label Maker Kit", "brand": "Brother", "categories": "Office > Label Makers", "price": 34.99, "description": "Label maker kit with tape."},
]


SHOP_GROUPS = [["s1", "s2", "s3", "s5", "s4"], ["p1", "p2", "p4", "p3"], ["d1", "d2", "d3", "d4"], ["l1", "l2", "l3"]]


def write_shop(folder: Path, rows: Sequence[dict[str, Any]] = SHOP_ROWS, users: int = 40) -> FeedSpec:
    """The tiny shop as feed files, with a history of shoppers who buy within one category (a
    JSON object user -> items, in order), for `Registry.add`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    groups = SHOP_GROUPS
    histories = {f"u{n}": [groups[n % 4][(n // 4 + k) % len(groups[n % 4])] for k in range(len(groups[n % 4]))] for n in range(users)}
    (folder / "events.json").write_text(json.dumps(histories))
    return FeedSpec(str(folder / "items.jsonl"), interactions=str(folder / "events.json"))


@pytest.fixture
def shop_catalog() -> Catalog:
    return make_catalog(SHOP_ROWS, name="tiny-shop")


def share_models(home: Path) -> Path:
    """`home` with the test home's models folder linked in: the embedding model is converted to
    ONNX once per test home, not once per temporary home (a cache keyed by model and backend)."""
    from tests.conftest import TEST_HOME

    (TEST_HOME / "models").mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to((TEST_HOME / "models").resolve(), target_is_directory=True)
    return home


def own_models(home: Path) -> Path:
    """`home` with a models folder of its own (so the files a test trains, or must not train, are
    its own) that links only the test home's converted embedding model."""
    from tests.conftest import TEST_HOME

    (TEST_HOME / "models" / "embed").mkdir(parents=True, exist_ok=True)
    (home / "models").mkdir(parents=True, exist_ok=True)
    if not (home / "models" / "embed").exists():
        (home / "models" / "embed").symlink_to((TEST_HOME / "models" / "embed").resolve(), target_is_directory=True)
    return home


@pytest.fixture(scope="session")
def fast_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return share_models(tmp_path_factory.mktemp("aisle-fast"))


@pytest.fixture(scope="session")
def fast_settings(fast_home: Path) -> Settings:
    """Settings for the fast tier: a temporary home, the packaged models from the real home."""
    return Settings(home=fast_home, chroma_url=None, llm="transformers", data_dir=REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shop_searcher(fast_settings: Settings):
    """A real hybrid searcher (embedded Chroma + BM25 + MiniLM) over the tiny shop."""
    from retrieval.search import open_searcher

    return open_searcher(fast_settings, catalog=make_catalog(SHOP_ROWS, name="tiny-shop"), progress=False)


@pytest.fixture
def scripted() -> type[ScriptedEngine]:
    return ScriptedEngine


@pytest.fixture
def tiny_agent(fast_settings: Settings, shop_searcher, tmp_path: Path):
    """The real Agent on the tiny shop with a scripted engine and its own session store."""
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore

    def make(engine: LLMEngine | None = None, **kwargs: Any) -> Agent:
        return Agent(
            fast_settings,
            store=SessionStore(tmp_path / "sessions.sqlite"),
            engine=engine or ScriptedEngine(),
            searchers={"tiny-shop": shop_searcher},
            default_catalog="tiny-shop",
            **kwargs,
        )

    return make
