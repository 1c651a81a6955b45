"""The residual plus a neighbourhood term: distance to the k nearest training rows, fused by robust z-scores.

A reconstruction residual misses anomalies that lie near the learned manifold but far from any
training row, and kNN distance misses those a wide cloud of normal rows hides. `fuse` adds the two
scores after putting each on the scale of normal validation rows (median and interquartile range),
so neither unit dominates; `weighted` gives the distance more say (`evaluate.knn_weights`). Which
rule a model keeps is decided on validation data only: the labelled anomalies prepare held out of
test, or synthetic ones where there are no labels.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors


def knn_index(reference: np.ndarray, k: int) -> NearestNeighbors:
    """A nearest-neighbour index of the reference (training) rows, flattened; k clamped to their count."""
    ref = np.asarray(reference).reshape(len(reference), -1)
    return NearestNeighbors(n_neighbors=min(k, len(ref))).fit(ref)


def knn_distances(index: NearestNeighbors, x: np.ndarray) -> np.ndarray:
    """(n,) float64 mean Euclidean distance of each row to its k nearest reference rows."""
    return index.kneighbors(np.asarray(x).reshape(len(x), -1))[0].mean(axis=1).astype(np.float64)


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


def validation_auroc(normal: np.ndarray, anomalies: np.ndarray) -> float:
    """AUROC of scores of normal validation rows vs validation anomalies (labelled or synthetic)."""
    y = np.r_[np.zeros(len(normal)), np.ones(len(anomalies))]
    return float(roc_auc_score(y, np.r_[normal, anomalies]))
