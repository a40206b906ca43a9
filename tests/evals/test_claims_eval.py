"""The planted-claims set on the real catalogs and histories: the reason gate accepts none of the
planted false claims (invented purchases, borrowed attributes, invented prices and numbers,
homoglyph payloads, flattery)."""

from __future__ import annotations

from evals.claims_eval import build_claims_set, measure


def test_no_planted_claim_passes_the_reason_gate(settings):
    cases, brands = build_claims_set(settings, per_catalog=40, seed=0)
    assert {c.catalog for c in cases} == {"amazon-office-2014", "amazon-office-2018", "tea-shop", "hardware-shop"}
    result = measure(cases, brands)
    assert result.planted >= 200
    assert result.false_accepts == [], result.false_accepts[:5]
    # the template reasons the writer falls back to always pass
    assert not [r for r in result.honest_rejects if r["kind"] == "honest:template"], result.honest_rejects[:5]
