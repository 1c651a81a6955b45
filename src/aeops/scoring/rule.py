"""The scoring rule: how a row and its reconstruction become one anomaly score, and where the threshold lies.

The residual score is the per-row mean squared residual, optionally smoothed, standardised and pooled.
`smoothing` (sigma in pixels) Gaussian-smooths each image's residual before squaring: a coherent
missing or extra part keeps its energy while scattered one-pixel misalignments of strokes average
out. `residual_scale` divides each feature's residual by its typical size on normal validation rows,
so a feature the model reconstructs well counts as much as a noisy one. `top_fraction` < 1 averages
only the largest squared values of each row (the worst region). An ensemble's score is the mean of
its members'. Where the rule has a kNN term, the residual score is fused with the mean distance to
the k nearest training rows, each put on the scale of normal validation rows (median and IQR).

`ScoringRule` is the fitted, JSON-serialised rule (it lives in the model bundle); `RuleScorer`
applies it. What each part buys is measured in `benchmarks/quality.py` and `benchmarks/tabular.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aeops.models.layout import Layout

if TYPE_CHECKING:  # imported where used: a served model without a kNN term or smoothing loads without them (1.3 s)
    from sklearn.neighbors import NearestNeighbors

TRUNCATE = 3.0  # kernel radius = round(3 sigma)
CHUNK_ROWS = 2048  # rows per block of a kNN term's per-feature split
SCALE_FLOOR = 1e-3  # a feature's residual scale is at least this share of the member's overall one


@dataclass(frozen=True)
class ScoringRule:
    """How a row's score is computed and where the anomaly threshold lies (the bundle's `scoring`)."""

    threshold: float
    smoothing: float = 0.0  # Gaussian sigma (pixels) on the residual image; 0 = none
    top_fraction: float = 1.0  # mean of this share of the largest squared residuals; 1 = all
    threshold_percentile: float | None = None  # of normal validation scores: 100 - the expected flagged %
    residual_scale: list[list[float]] | None = None  # (members, features) residual RMS on normal val rows; None = raw
    neighbors: int = 0  # k > 0: the score adds the mean distance to the k nearest training rows (the bundle's reference)
    fusion: list[list[float]] | None = None  # [[median, IQR] of normal val residual scores, [the same of their distances]]
    layout: dict | None = None  # a mixed-type table's feature groups (aeops.models.layout): one residual per column
    # without labels: the share of (contaminated) validation rows above the threshold; None = a clean normal percentile
    contamination: float | None = None
    pixel_threshold: float | None = None  # images: an anomaly-map value above it is a defect pixel (the predicted mask)

    @property
    def expected_flagged(self) -> float | None:
        return None if self.threshold_percentile is None else 1 - self.threshold_percentile / 100


class RuleScorer:
    """A `ScoringRule` ready to apply: the residual score, and the kNN term where the rule has one."""

    def __init__(self, rule: ScoringRule, *, image_shape: Sequence[int] | None, reference: np.ndarray | None = None,
                 index: NearestNeighbors | None = None):
        """`reference`: the training rows of a kNN term (and only of one); `index`: their index where already built."""
        if bool(rule.neighbors) != (reference is not None):
            raise ValueError("a scoring rule with a kNN term needs the reference rows, and only it")
        self.rule, self.image_shape, self.reference = rule, image_shape, reference
        self.scale = None if rule.residual_scale is None else np.asarray(rule.residual_scale, np.float64)
        self.layout = Layout.from_dict(rule.layout)
        self.index = index if index is not None or reference is None else knn_index(reference, rule.neighbors)

    def with_rule(self, rule: ScoringRule) -> RuleScorer:
        """The same scorer (reference rows and index kept) with another fitted rule."""
        return RuleScorer(rule, image_shape=self.image_shape, reference=self.reference, index=self.index)

    def residual(self, x: np.ndarray, recon: np.ndarray) -> np.ndarray:
        """(n,) float64 residual scores; `recon` (n, ...) or an ensemble's (members, n, ...)."""
        return anomaly_scores(x, recon, smoothing=self.rule.smoothing, image_shape=self.image_shape,
                              top_fraction=self.rule.top_fraction, scale=self.scale, layout=self.layout)

    def __call__(self, x: np.ndarray, recon: np.ndarray) -> np.ndarray:
        """(n,) float64 anomaly scores: the residual score, fused with the kNN distance where the rule says so."""
        score = self.residual(x, recon)
        if self.index is None:
            return score
        return fuse(score, knn_distances(self.index, x), self.rule.fusion)


    def contributions(self, x: np.ndarray, recon: np.ndarray) -> np.ndarray:
        """(n, features) float64: each feature's part of the row's score, such that a row's parts sum to its
        score plus `offset` (0 for a residual rule). A feature's residual part is its mean over members of
        its (scaled) squared residual over the number of features averaged (the top-fraction's where the
        rule pools, 0 for a feature outside a member's top share); a kNN term's distance is split by each
        feature's share of the squared differences to every neighbour (so each neighbour's Euclidean
        distance is split exactly), both parts on the fused scale."""
        squared = self._squares(x, recon)
        d = squared.shape[2]
        k = max(1, round(self.rule.top_fraction * d))
        if k < d:  # only a member's k largest squares count, as in `anomaly_scores`
            top = np.argpartition(squared, d - k, axis=2)[:, :, d - k :]
            kept = np.zeros(squared.shape, bool)
            np.put_along_axis(kept, top, True, axis=2)
            squared = squared * kept
        parts = squared.mean(axis=0) / k
        if self.index is None:
            return parts
        (_, s1), (_, s2) = self.rule.fusion  # type: ignore[misc]
        flat = np.asarray(x, np.float64).reshape(len(x), -1)
        ref = np.asarray(self.reference, np.float64).reshape(len(self.reference), -1)  # type: ignore[arg-type]
        per_column = np.empty_like(flat)
        for a in range(0, len(flat), CHUNK_ROWS):  # (rows, k, columns) differences, a bounded block at a time
            near = self.index.kneighbors(flat[a : a + CHUNK_ROWS], return_distance=False)
            diff2 = (flat[a : a + CHUNK_ROWS, None, :] - ref[near]) ** 2
            dist = np.sqrt(diff2.sum(axis=2, keepdims=True))
            per_column[a : a + CHUNK_ROWS] = (diff2 / np.where(dist > 0, dist, 1.0)).mean(axis=1)  # sums to the distance
        if self.layout is not None:
            per_column = per_column @ self.layout.column_owner()
        return parts / s1 + per_column / s2

    def anomaly_map(self, x: np.ndarray, recon: np.ndarray) -> np.ndarray:
        """(n, input values) float64: each input value's squared residual under the rule (smoothed and scaled
        as the score is), averaged over members; every value, not only a top fraction's. An image's map."""
        return self._squares(x, recon).mean(axis=0)

    def _squares(self, x: np.ndarray, recon: np.ndarray) -> np.ndarray:
        return _squared_residuals(x, recon, smoothing=self.rule.smoothing, image_shape=self.image_shape,
                                  scale=self.scale, layout=self.layout)

    @property
    def offset(self) -> float:
        """What `contributions` sum to minus the score: a fused rule's centring (median / IQR of both terms)."""
        if self.index is None:
            return 0.0
        (m1, s1), (m2, s2) = self.rule.fusion  # type: ignore[misc]
        return m1 / s1 + m2 / s2


def feature_shares(parts: np.ndarray) -> np.ndarray:
    """(n, features) `RuleScorer.contributions` → each feature's share of its row's parts (rows sum to 1)."""
    parts = np.maximum(np.asarray(parts, np.float64), 0.0)
    total = parts.sum(axis=1, keepdims=True)
    return np.divide(parts, total, out=np.full_like(parts, 1.0 / parts.shape[1]), where=total > 0)


def _residuals(x: np.ndarray, recon: np.ndarray, *, smoothing: float, image_shape: Sequence[int] | None,
               layout: Layout | None = None) -> np.ndarray:
    """(members, n, features) float64 residuals; `recon` is (n, ...) or (members, n, ...); with a layout one
    per feature group (a categorical column's root Brier score, 0 for a missing value)."""
    n = len(x)
    flat = np.asarray(x, np.float64).reshape(n, -1)
    recon = np.asarray(recon, np.float64)
    members = len(recon) if recon.ndim == np.ndim(x) + 1 else 1
    residual = flat[None] - recon.reshape(members, n, -1)
    if smoothing > 0:
        if image_shape is None:
            raise ValueError("score smoothing needs image data (an image_shape); use 0 for tables")
        images = residual.reshape(*residual.shape[:2], *image_shape)
        from scipy.ndimage import gaussian_filter

        sigma = (0,) * (images.ndim - 2) + (smoothing, smoothing)
        residual = gaussian_filter(images, sigma, mode="constant", truncate=TRUNCATE).reshape(residual.shape)
    return residual if layout is None else layout.group_residuals(residual, flat)


def residual_scale(x: np.ndarray, recon: np.ndarray, *, smoothing: float = 0.0,
                   image_shape: Sequence[int] | None = None, layout: Layout | None = None) -> np.ndarray:
    """(members, features): each feature's root-mean-square residual on these (normal validation) rows."""
    rms = np.sqrt(np.mean(_residuals(x, recon, smoothing=smoothing, image_shape=image_shape, layout=layout) ** 2, axis=1))
    floor = SCALE_FLOOR * np.sqrt(np.mean(rms**2, axis=1, keepdims=True))
    return np.maximum(rms, np.maximum(floor, np.finfo(np.float64).tiny))


def _squared_residuals(x: np.ndarray, recon: np.ndarray, *, smoothing: float, image_shape: Sequence[int] | None,
                       scale: np.ndarray | Sequence[Sequence[float]] | None, layout: Layout | None) -> np.ndarray:
    """(members, n, features) squared residuals, each divided by its feature's scale first where there is one."""
    residual = _residuals(x, recon, smoothing=smoothing, image_shape=image_shape, layout=layout)
    if scale is not None:
        scale = np.asarray(scale, np.float64)
        if scale.shape != (residual.shape[0], residual.shape[2]):
            raise ValueError(f"residual scale of shape {scale.shape} for {residual.shape[0]} member(s) x "
                             f"{residual.shape[2]} features")
        residual = residual / scale[:, None, :]
    return residual**2


def anomaly_scores(x: np.ndarray, recon: np.ndarray, *, smoothing: float = 0.0,
                   image_shape: Sequence[int] | None = None, top_fraction: float = 1.0,
                   scale: np.ndarray | Sequence[Sequence[float]] | None = None,
                   layout: Layout | None = None) -> np.ndarray:
    """(n,) float64 scores; `recon` (n, ...) or an ensemble's (members, n, ...); `scale` (members, features).
    With the defaults: each row's plain mean squared residual (its reconstruction error)."""
    squared = _squared_residuals(x, recon, smoothing=smoothing, image_shape=image_shape, scale=scale, layout=layout)
    d = squared.shape[2]
    k = max(1, round(top_fraction * d))
    if k < d:
        squared = np.partition(squared, d - k, axis=2)[:, :, d - k :]
    return np.mean(squared, axis=(0, 2))


def choose_threshold(val_scores_normal: np.ndarray, percentile: float) -> float:
    """Threshold = `percentile` of scores of NORMAL validation rows (never test labels)."""
    scores = np.asarray(val_scores_normal, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("choose_threshold: no validation scores")
    return float(np.percentile(scores, percentile))


CONTAMINATION_RANGE = (0.005, 0.3)  # what `estimate_contamination` may return
OUTLIER_SDS = 3.0


def estimate_contamination(scores: np.ndarray) -> float:
    """The share of scores more than 3 robust standard deviations (1.4826 MAD) above their median, on a log
    scale where every score is positive (residual scores are right-skewed), within CONTAMINATION_RANGE."""
    s = np.asarray(scores, np.float64).ravel()
    if s.size == 0:
        raise ValueError("estimate_contamination: no scores")
    if (s > 0).all():
        s = np.log(s)
    median = np.median(s)
    spread = 1.4826 * np.median(np.abs(s - median))
    share = float(np.mean(s > median + OUTLIER_SDS * spread)) if spread > 0 else 0.0
    return float(np.clip(share, *CONTAMINATION_RANGE))


# ---------------------------------------------------------------- the kNN term
def knn_index(reference: np.ndarray, k: int) -> NearestNeighbors:
    """A nearest-neighbour index of the reference (training) rows, flattened; k clamped to their count."""
    from sklearn.neighbors import NearestNeighbors

    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    return NearestNeighbors(n_neighbors=min(k, len(ref))).fit(ref)


def knn_distances(index: NearestNeighbors, x: np.ndarray) -> np.ndarray:
    """(n,) float64 mean Euclidean distance of each row to its k nearest reference rows."""
    return index.kneighbors(np.asarray(x, np.float64).reshape(len(x), -1))[0].mean(axis=1).astype(np.float64)


def robust_stats(values: np.ndarray) -> list[float]:
    """[median, interquartile range] of scores (the range floored so a constant score cannot divide by 0)."""
    q1, median, q3 = np.percentile(np.asarray(values, np.float64), [25, 50, 75])
    return [float(median), float(max(q3 - q1, 1e-12 * max(abs(median), 1.0), np.finfo(np.float64).tiny))]


def weighted(stats: list[list[float]], weight: float) -> list[list[float]]:
    """Fusion stats that count the distance `weight` times (its scale divided by it): `fuse` and the bundle stay as is."""
    (m1, s1), (m2, s2) = stats
    return [[m1, s1], [m2, s2 / weight]]


def fuse(residual: np.ndarray, distance: np.ndarray, stats: list[list[float]]) -> np.ndarray:
    """Sum of robust z-scores; `stats` = [robust_stats(normal val residuals), robust_stats(their distances)],
    the second scale divided by the distance's weight where it is not 1 (`weighted`)."""
    (m1, s1), (m2, s2) = stats
    return (np.asarray(residual, np.float64) - m1) / s1 + (np.asarray(distance, np.float64) - m2) / s2
