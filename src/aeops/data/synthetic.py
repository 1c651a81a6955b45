"""Synthetic anomalies for data without labels: normal rows with part of their features swapped."""

from __future__ import annotations

import numpy as np

SWAP_SHARE = 0.25  # share of features a synthetic anomaly takes from another row


def synthetic_anomalies(x: np.ndarray, seed: int, share: float = SWAP_SHARE) -> np.ndarray:
    """Rows of `x` with a random `share` of their features (at least one) taken from another random row:
    each feature's marginal stays, the joint structure breaks."""
    rng = np.random.default_rng(seed)
    source = x.reshape(len(x), -1)
    flat = source.copy()
    n, d = flat.shape
    k = max(1, round(share * d))
    donors = (np.arange(n) + rng.integers(1, max(n, 2), size=n)) % n  # never the row itself
    for i in range(n):
        cols = rng.choice(d, size=k, replace=False)
        flat[i, cols] = source[donors[i], cols]
    return flat.reshape(x.shape)
