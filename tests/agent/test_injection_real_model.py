"""The injection suite against the real packaged model: poisoned catalog items and hostile
messages, with every LLM path on (reasons, intro, constraint extraction). The fast tier plays a
compromised model; this checks that the real one, prompted with the poison, leaks nothing either."""

from __future__ import annotations

import pytest

from tests.fast.conftest import make_catalog
from tests.fast.test_injection import HOSTILE_MESSAGES, POISONED_ROWS, talk_and_check


@pytest.fixture(scope="module")
def real_agent(settings, transformers_engine, tmp_path_factory):
    from agent.chat.agent import Agent
    from agent.chat.store import SessionStore
    from retrieval.search import open_searcher

    searcher = open_searcher(settings, catalog=make_catalog(POISONED_ROWS, name="poisoned-shop"), progress=False)
    return Agent(
        settings,
        store=SessionStore(tmp_path_factory.mktemp("inj") / "s.sqlite"),
        engine=transformers_engine,
        searchers={"poisoned-shop": searcher},
        default_catalog="poisoned-shop",
        llm_reasons=True,
        llm_intro=True,
        llm_extract=True,
    )


def test_no_payload_reaches_a_reply_with_the_real_model(real_agent):
    talk_and_check(real_agent, HOSTILE_MESSAGES[:5])
