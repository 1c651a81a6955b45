"""Synthetic anomalies for data without labels: normal rows with part of their features swapped."""

from __future__ import annotations

from typing import Any

import numpy as np

SWAP_SHARE = 0.25  # share of features a synthetic anomaly takes from another row


def synthetic_anomalies(x: np.ndarray, seed: int, share: float = SWAP_SHARE, *,
                        layout: dict[str, Any] | None = None) -> np.ndarray:
    """Rows of `x` with a random `share` of their features (at least one) taken from another random row:
    each feature's marginal stays, the joint structure breaks. With a mixed-type table's `layout` a feature
    is a column group (a one-hot block, a value with its missing flag), swapped whole."""
    rng = np.random.default_rng(seed)
    source = x.reshape(len(x), -1)
    flat = source.copy()
    n, d = flat.shape
    groups = _groups(layout) if layout else [np.array([j]) for j in range(d)]
    k = max(1, round(share * len(groups)))
    donors = (np.arange(n) + rng.integers(1, max(n, 2), size=n)) % n  # never the row itself
    for i in range(n):
        chosen = rng.choice(len(groups), size=k, replace=False)
        cols = groups[chosen[0]] if k == 1 else np.concatenate([groups[g] for g in chosen])
        flat[i, cols] = source[donors[i], cols]
    return flat.reshape(x.shape)


def _groups(layout: dict[str, Any]) -> list[np.ndarray]:
    """Column indices per feature: a value goes with its missing flag (which is then no feature of its own)."""
    return [np.array([*range(g["start"], g["stop"]), *([g["mask"]] if g.get("mask") is not None else [])])
            for g in layout["groups"] if g["kind"] != "flag"]
