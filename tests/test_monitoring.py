"""Drift checks on synthetic data with a known answer: the profile's bins, the tests, the verdict."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from aeops.monitoring.drift import BatchStats, assess, homogeneity, psi
from aeops.monitoring.report import markdown
from aeops.scoring.profile import MIN_SHARE, Profile, build_profile, feature_bins

D = 12


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ten Gaussian features, one with three values, one 97 % ones (as tables hold them)."""
    return np.column_stack([rng.normal(5, 2, size=(n, D - 2)), rng.integers(0, 3, size=(n, 1)),
                            (rng.random((n, 1)) < 0.97).astype(float)])


@pytest.fixture(scope="module")
def profile() -> Profile:
    rng = np.random.default_rng(0)
    val_scores = rng.gamma(2.0, 1.0, size=1000)
    threshold = float(np.quantile(val_scores, 0.95))
    return build_profile([f"f{i}" for i in range(D)], _rows(rng, 5000), val_scores=val_scores, threshold=threshold,
                         expected_flagged=0.05)


def _check(profile: Profile, x: np.ndarray, scores: np.ndarray) -> dict:
    batch = BatchStats(profile)
    half = len(x) // 2  # two chunks add up like one
    for part in (slice(0, half), slice(half, None)):
        batch.add(x[part], scores[part], scores[part] > profile.threshold, np.zeros_like(x[part], bool))
    return assess(batch)


def test_bins_keep_every_feature_checkable():
    rng = np.random.default_rng(1)
    edges, shares = feature_bins(rng.normal(size=10_000))
    assert len(shares) == 10 and np.allclose(shares, 0.1, atol=0.005)
    edges, shares = feature_bins(np.r_[np.zeros(30), np.ones(970)])  # a rare value keeps its own bin
    assert shares.tolist() == [0.03, 0.97]
    edges, shares = feature_bins(np.r_[np.zeros(5), np.ones(995), np.full(1000, 2.0)])  # 0.25 % merged away
    assert (shares >= MIN_SHARE).all() and shares.sum() == pytest.approx(1)
    edges, shares = feature_bins(np.zeros(100))  # constant: empty bins either side, so any change shows
    assert shares.tolist() == [0.0, 1.0, 0.0]
    assert np.bincount(np.searchsorted(edges, [-1e-9, 0.0, 1e-9]), minlength=3).tolist() == [1, 1, 1]


def test_homogeneity_statistic_is_scipys_chi_square():
    ref, observed = np.array([0.2, 0.5, 0.3]), np.array([30, 40, 30])
    stat, dof = homogeneity(ref, 1000, observed)
    expected = stats.chi2_contingency(np.vstack([ref * 1000, observed]), correction=False)
    assert stat == pytest.approx(expected.statistic) and dof == expected.dof
    assert homogeneity(np.array([1.0]), 1000, np.array([50])) == (0.0, 0)  # one bin: nothing to test
    assert psi(ref, ref * 1000) == pytest.approx(0, abs=1e-3) and psi(ref, np.array([90, 5, 5])) > 1


def test_clean_batches_rarely_alarm_and_shifted_ones_always_do(profile: Profile):
    rng = np.random.default_rng(2)
    alarms = sum(_check(profile, _rows(rng, 500), rng.gamma(2.0, 1.0, 500))["verdict"] == "drift" for _ in range(100))
    assert alarms <= 5  # alpha = 0.01 over the three checks: ~1 expected

    x = _rows(rng, 500)
    x[:, 3] += 2.0  # one feature shifted by one standard deviation
    result = _check(profile, x, rng.gamma(2.0, 1.0, 500))
    assert result["verdict"] == "drift" and result["drivers"] == ["f3"] and result["features"][0]["feature"] == "f3"

    x = _rows(rng, 500)
    x[:, 11] = 0.0  # the 97 %-ones feature stuck at its rare value
    assert _check(profile, x, rng.gamma(2.0, 1.0, 500))["drivers"] == ["f11"]

    scores = rng.gamma(2.0, 1.0, 500) * 1.6  # the model reconstructs worse: scores up, more flagged
    result = _check(profile, _rows(rng, 500), scores)
    assert result["drivers"] == ["anomaly_score", "flagged_share"] and result["flagged"]["share"] > 0.1
    assert result["score"]["median_percentile"] > 70
    text = markdown(result | {"model": {"uri": "models:/m/1", "name": "m", "version": "1"}, "data": "b.csv",
                              "checked_at": "now"})
    assert text.startswith("# Monitoring: DRIFT") and "| f0 |" in text


def test_profile_round_trips_and_ranks_scores(profile: Profile):
    again = Profile.from_dict(profile.to_dict())
    assert again == profile
    ref = np.asarray(profile.val_scores)
    assert profile.score_percentile(np.array([ref.min() - 1, np.median(ref), ref.max()])).tolist() == [0.0, 50.0, 100.0]
    with pytest.raises(ValueError, match="format"):
        Profile.from_dict({**profile.to_dict(), "format": 99})
