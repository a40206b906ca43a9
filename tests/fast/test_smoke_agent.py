"""The tiny agent answers a first turn from the tiny shop (the fast tier's own sanity check)."""

from __future__ import annotations


def test_first_turn_shows_items_from_the_shop(tiny_agent, shop_catalog):
    agent = tiny_agent()
    result = agent.turn(None, "a quiet stapler")
    assert result.action == "recommend"
    assert result.items, result.reply
    assert all(i.id in shop_catalog.items for i in result.items)
    assert all("stapler" in i.title.lower() for i in result.items)
