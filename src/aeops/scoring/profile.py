"""The reference profile a model carries: what its training data and its normal scores looked like.

Per feature (raw units): bin edges at the training deciles (bins holding under `MIN_SHARE` of the
training rows merged into a neighbour, so a discrete or mostly-constant feature keeps bins a batch
can fill) with the training share in each bin, and a few quantiles for the report. Per model: the
sorted anomaly scores of the normal validation rows (what the threshold was set on) and the share
of normal rows expected above the threshold. Pure numpy: the bundle builds it, `monitor` and the
scorer read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

FORMAT = 1
BIN_LEVELS = np.linspace(0.1, 0.9, 9)  # decile edges: 10 bins per feature at most
MIN_SHARE = 0.01  # a bin holds at least this share of the training rows (else merged)
QUANTILE_LEVELS = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
MAX_SCORES = 5000  # reference scores kept (evenly spaced order statistics beyond it)


@dataclass(frozen=True)
class Profile:
    """Reference for drift checks; `edges[j]` are feature j's inner bin edges, `shares[j]` its bin shares."""

    features: list[str]
    edges: list[list[float]]
    shares: list[list[float]]
    quantiles: list[list[float]]  # per feature, at QUANTILE_LEVELS
    train_rows: int
    val_scores: list[float]  # sorted normal validation scores
    expected_flagged: float  # share of normal rows above the threshold (100 - threshold percentile)
    threshold: float
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if data.get("format") != FORMAT:
            raise ValueError(f"reference profile format {data.get('format')!r}, this aeops reads {FORMAT}")
        return cls(**data)

    def score_percentile(self, scores: np.ndarray) -> np.ndarray:
        """Percent of normal validation scores at or below each score (0–100)."""
        ref = np.asarray(self.val_scores, np.float64)
        return 100.0 * np.searchsorted(ref, np.asarray(scores, np.float64), side="right") / len(ref)

    def bin_counts(self, x: np.ndarray) -> list[np.ndarray]:
        """Per feature: how many of the rows `x` (n, features; raw units) fall in each reference bin."""
        return [np.bincount(np.searchsorted(e, x[:, j], side="left"), minlength=len(e) + 1)
                for j, e in enumerate(self.edges_arrays)]

    @cached_property
    def edges_arrays(self) -> list[np.ndarray]:
        return [np.asarray(e, np.float64) for e in self.edges]


def feature_bins(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner edges (bins are (-inf, e0], (e0, e1], …, (ek, inf)) and the column's share in each bin.

    A constant feature gets empty bins on both sides of its value (any change shows); one with at
    most 10 distinct values a bin per value; others the decile edges. Bins under MIN_SHARE merge.
    """
    column = np.asarray(column, np.float64)
    values = np.unique(column)
    if len(values) == 1:
        c = float(values[0])
        return np.array([np.nextafter(c, -np.inf), c]), np.array([0.0, 1.0, 0.0])
    if len(values) <= len(BIN_LEVELS) + 1:  # edges midway: a value off by a rounding error stays in its bin
        edges = (values[:-1] + values[1:]) / 2
    else:
        edges = np.unique(np.quantile(column, BIN_LEVELS, method="inverted_cdf"))
    while True:
        shares = np.bincount(np.searchsorted(edges, column, side="left"), minlength=len(edges) + 1) / len(column)
        small = np.flatnonzero(shares < MIN_SHARE)
        if len(edges) <= 1 or len(small) == 0:
            return edges, shares
        i = int(small[np.argmin(shares[small])])
        # merge bin i with its smaller neighbour: drop the edge between them
        if i == 0:
            drop = 0
        elif i == len(shares) - 1:
            drop = i - 1
        else:
            drop = i - 1 if shares[i - 1] <= shares[i + 1] else i
        edges = np.delete(edges, drop)


def build_profile(features: list[str], train_raw: np.ndarray, *, val_scores: np.ndarray, threshold: float,
                  expected_flagged: float) -> Profile:
    """The profile of the training rows (raw units) and the normal validation scores."""
    train_raw = np.asarray(train_raw, np.float64)
    if train_raw.ndim != 2 or train_raw.shape[1] != len(features) or len(train_raw) == 0:
        raise ValueError(f"training rows of shape {train_raw.shape} for {len(features)} features")
    edges, shares = zip(*(feature_bins(train_raw[:, j]) for j in range(train_raw.shape[1])))
    quantiles = np.quantile(train_raw, QUANTILE_LEVELS, axis=0).T
    scores = np.sort(np.asarray(val_scores, np.float64))
    if len(scores) > MAX_SCORES:
        scores = scores[np.linspace(0, len(scores) - 1, MAX_SCORES).round().astype(int)]
    return Profile(
        features=list(features), edges=[e.tolist() for e in edges], shares=[s.tolist() for s in shares],
        quantiles=quantiles.tolist(), train_rows=len(train_raw), val_scores=scores.tolist(),
        expected_flagged=float(expected_flagged), threshold=float(threshold),
    )
