"""evals/copy_verifiers.py: the measures that compare automatic verifiers with a hand read."""

from __future__ import annotations

import pytest

from agent.copy.corroborate import Corroboration
from evals.copy_verifiers import corroboration_scores, flag_stats, roc_auc
from tests.fast.test_copy_corroborate import CAT

pytestmark = pytest.mark.fast


def test_roc_auc_is_the_chance_an_invented_copy_scores_higher():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert roc_auc([0.3], [True]) is None  # no ok copy to compare with


def test_flag_stats_count_the_good_copy_a_verifier_costs():
    assert flag_stats([True, True, False, False], [True, False, True, False]) == {"flagged": 2, "precision": 0.5, "recall": 0.5, "ok_flagged": 1}


def test_corroboration_scores_a_copy_by_its_rejected_sentences():
    lines = [
        {"item": "new", "selling_point": "Shears for cutting garden stems.", "description": "Use them for cutting stems. They cut branches in the garden."},
        {"item": "new", "selling_point": "Shears with a built-in sharpener.", "description": "Use them for cutting stems. They have a safety lock."},
    ]
    scores, flags = corroboration_scores(lines, CAT, Corroboration(CAT, neighbours=3, min_support=2))
    assert scores[0] == 0.0 and not flags[0]
    assert scores[1] == pytest.approx(2 / 3) and flags[1]  # its selling point is rejected: the writer would drop it
