"""Payloads aisle shows on the poisoned catalog (tests/poisoned.py) with a compromised LLM.

Counts the replies of /v1/turn and /v1/chat/completions (in-process FastAPI app) that carry a
planted payload, the text fields that do, and the shown cards of poisoned items that keep a dirty
field. It does this for the imported catalog and for one that skipped the import screen.
The hostile model answers in turn from a list, so counts move by one or two between runs.

    python -m bench.poisoned [-v]        # this tree
    python -m bench.poisoned -v --engine llamacpp --model qwen2.5-coder-1.5b   # a real model instead
    # another tree's code (e.g. before the screen), with this tree's payloads:
    python -c "import runpy, sys; sys.path.insert(0, 'OTHER_TREE'); runpy.run_path('bench/poisoned.py', run_name='__main__')"
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from fastapi.testclient import TestClient

from agent.chat.agent import Agent
from agent.chat.store import SessionStore
from agent.entrypoints.api import create_app
from agent.settings import Settings
from retrieval.catalog import Catalog, Item, LoadReport, clean_text
from retrieval.registry import FeedSpec, Registry
from retrieval.search import open_searcher
from tests.fast.conftest import share_models

_spec = importlib.util.spec_from_file_location("poisoned", Path(__file__).resolve().parent.parent / "tests" / "poisoned.py")
P = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(P)


def old_catalog() -> Catalog:
    """The rows as an import without the screen keeps them (cleaned, every sentence, urls as given)."""
    items = {
        row["id"]: Item(
            id=row["id"],
            title=clean_text(row["title"]),
            description=clean_text(row.get("description", "")),
            brand=clean_text(row.get("brand", "")),
            categories=tuple(clean_text(c) for c in row.get("categories", "").split(" > ")),
            price=row.get("price"),
            url=row.get("url", ""),
            image_url=row.get("image_url", ""),
            attributes=tuple(sorted(row.get("attributes", {}).items())),
        )
        for row in P.ROWS
    }
    return Catalog("old-poisoned", items, LoadReport("old-poisoned", loaded=len(items)))


def main(verbose: bool, engine: str | None = None, model: str | None = None) -> None:
    """With `engine`, a real model (e.g. llamacpp + an added model) writes the reasons, the intro and
    the extraction in place of the hostile stub: does a fluent model repeat what the poisoned text says?"""
    tmp = Path(tempfile.mkdtemp())
    hostile = None
    if engine:
        from agent.engines.model_registry import added_gguf, known_model

        if model and known_model(model):  # an added model lives in the real home, not the bench's
            model = str(added_gguf(Settings().models_dir, model))
        settings = Settings(home=share_models(tmp / "home"), chroma_url=None, llm=engine, llm_model=model)
    else:
        hostile = P.HostileLLM()
        settings = Settings(home=share_models(tmp / "home"), chroma_url=None, llm="openai", llm_url=hostile.url, llm_served_model="hostile", llm_timeout_s=10)
    Registry(settings).add("poisoned", FeedSpec(items=str(P.write_feed(tmp / "poisoned.jsonl")), max_bad_share=1.0))
    poisoned_ids = {r["id"] for r in P.POISONED_ROWS}
    headers = {"Authorization": "Bearer k"}
    for name, searcher in (("poisoned", open_searcher(settings, "poisoned", progress=False)), ("old-poisoned", open_searcher(settings, catalog=old_catalog(), progress=False))):
        agent = Agent(settings, store=SessionStore(tmp / f"{name}.sqlite"), searchers={name: searcher}, default_catalog=name, llm_reasons=True, llm_intro=True, llm_extract=True)
        client = TestClient(create_app(settings, agent=agent, api_key="k"))
        bodies, cards = [], []
        for route in ("turn", "chat"):
            sid = None
            for message in P.MESSAGES:
                if route == "turn":
                    body = client.post("/v1/turn", json={"message": message, **({"session_id": sid} if sid else {})}, headers=headers).json()
                    turn = body
                else:
                    body = client.post("/v1/chat/completions", json={"model": "aisle", "messages": [{"role": "user", "content": message}], **({"user": sid} if sid else {})}, headers=headers).json()
                    turn = body["aisle"]
                sid = turn["session_id"]
                bodies.append(body)
                cards += [c for c in turn["items"] if c["id"] in poisoned_ids]
        dirty = [b for b in bodies if P.reply_payloads(b)]
        fields = sum(len(P.reply_payloads(b)) for b in bodies)
        dirty_cards = [c for c in cards if P.reply_payloads(c)]
        llm_said = hostile.answers if hostile else f"from {settings.llm} {Path(str(settings.llm_model)).name}"
        print(f"{name}: replies {len(bodies)}, with a payload {len(dirty)}, text fields with a payload {fields}; poisoned item cards shown {len(cards)}, with a dirty field {len(dirty_cards)}; LLM answers {llm_said}")
        if verbose:
            for body in dirty[:3]:
                for path, found, text in P.reply_payloads(body)[:4]:
                    print("    ", path, found, repr(text[:140]))
    if hostile:
        hostile.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", action="store_true", help="print the first dirty replies")
    parser.add_argument("--engine", help="a real engine (transformers, llamacpp, openai) instead of the hostile stub")
    parser.add_argument("--model", help="AISLE_LLM_MODEL for --engine")
    args = parser.parse_args()
    main(args.v, args.engine, args.model)
