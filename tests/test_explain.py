"""Why a row was flagged: per-feature parts of the score (`RuleScorer.contributions`) under every scoring rule."""

from __future__ import annotations

import numpy as np
import pytest

from aeops.scoring.rule import RuleScorer, ScoringRule, robust_stats

N, D, MEMBERS = 60, 6, 3
# a mixed table's layout: a numeric value with its missing flag, a second numeric, a 3-level categorical
LAYOUT = {"width": 6, "groups": [
    {"name": "a", "kind": "numeric", "start": 0, "stop": 1, "mask": 1},
    {"name": "a:missing", "kind": "flag", "start": 1, "stop": 2, "mask": None},
    {"name": "b", "kind": "numeric", "start": 2, "stop": 3, "mask": None},
    {"name": "colour", "kind": "categorical", "start": 3, "stop": 6, "mask": None}]}


def _rows(rng: np.random.Generator, *, mixed: bool) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(N, D))
    recon = x[None] + 0.3 * rng.normal(size=(MEMBERS, N, D))
    if mixed:
        x[:, 1] = rng.random(N) < 0.2  # missing flags
        x[:, 3:] = np.eye(3)[rng.integers(0, 3, N)]
        x[:5, 3:] = 0.0  # colour missing in 5 rows
        logits = rng.normal(size=(MEMBERS, N, 3))
        recon[:, :, 3:] = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    return x, recon


@pytest.mark.parametrize("mixed", [False, True], ids=["numeric", "mixed"])
@pytest.mark.parametrize("rule", ["residual", "standardised", "top half", "kNN fused", "standardised + kNN"])
def test_contributions_sum_to_the_score_plus_the_rule_offset(rule, mixed):
    rng = np.random.default_rng(0)
    x, recon = _rows(rng, mixed=mixed)
    features = 3 if mixed else D
    kw: dict = {"layout": LAYOUT if mixed else None}
    if "standardised" in rule:
        kw["residual_scale"] = rng.uniform(0.2, 2.0, size=(MEMBERS, features)).tolist()
    if rule == "top half":
        kw["top_fraction"] = 0.5
    reference = None
    if "kNN" in rule:
        reference = _rows(rng, mixed=mixed)[0][:40]
        kw |= {"neighbors": 5, "fusion": [robust_stats(rng.gamma(2.0, size=50)), robust_stats(rng.gamma(3.0, size=50))]}
    scorer = RuleScorer(ScoringRule(threshold=1.0, **kw), image_shape=None, reference=reference)
    parts = scorer.contributions(x, recon)
    assert parts.shape == (N, features) and (parts >= 0).all()
    np.testing.assert_allclose(parts.sum(axis=1), scorer(x, recon) + scorer.offset, rtol=1e-10)
    assert (scorer.offset == 0) == (reference is None)
    if rule == "top half":  # a member's parts outside its top share are 0: at most 3 of 6 features per member
        assert ((parts > 0).sum(axis=1) <= MEMBERS * 3).all()
        single = RuleScorer(ScoringRule(threshold=1.0, **kw), image_shape=None).contributions(x, recon[:1])
        assert ((single > 0).sum(axis=1) == features // 2 if not mixed else (single > 0).sum(axis=1) <= 2).all()
    if mixed:
        assert (parts[x[:, 1] == 1, 0] >= 0).all()
        if reference is None:  # a missing value and a missing level have no residual: no part either
            assert (parts[x[:, 1] == 1, 0] == 0).all() and (parts[:5, 2] == 0).all()


def test_a_feature_far_from_its_reconstruction_gets_the_largest_part():
    rng = np.random.default_rng(1)
    x, recon = _rows(rng, mixed=False)
    x[:, 4] += 5.0  # feature 4 is reconstructed badly in every row
    reference = rng.normal(size=(40, D))
    for kw in ({}, {"neighbors": 5, "fusion": [[1.0, 1.0], [2.0, 1.0]]}):
        scorer = RuleScorer(ScoringRule(threshold=1.0, **kw), image_shape=None, reference=reference if kw else None)
        assert (scorer.contributions(x, recon).argmax(axis=1) == 4).all()
