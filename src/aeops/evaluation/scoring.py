"""The autoencoder's anomaly score: per-row mean squared residual, optionally smoothed and pooled.

`smoothing` (sigma in pixels) Gaussian-smooths each image's residual before squaring: a coherent
missing or extra part (a different shape) keeps its energy while scattered one-pixel misalignments
of strokes average out. `top_fraction` < 1 averages only the largest squared values of each row
(the worst region), so a local defect is not diluted by a well-reconstructed rest. What each
buys is measured in `benchmarks/quality.py` (README, Benchmarks). Shared by `evaluate` and serving.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
from scipy.ndimage import gaussian_filter

TRUNCATE = 3.0  # kernel radius = round(3 sigma)
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x, recon) -> (n,) scores


def anomaly_scores(
    x: np.ndarray,
    recon: np.ndarray,
    smoothing: float = 0.0,
    image_shape: Sequence[int] | None = None,
    top_fraction: float = 1.0,
) -> np.ndarray:
    """(n,) float64 scores; `smoothing` > 0 needs `image_shape` (channels, height, width)."""
    n = len(x)
    residual = np.asarray(x, np.float64).reshape(n, -1) - np.asarray(recon, np.float64).reshape(n, -1)
    if smoothing > 0:
        if image_shape is None:
            raise ValueError("score smoothing needs image data (an image_shape); use 0 for tables")
        images = residual.reshape(n, *image_shape)
        sigma = (0,) * (images.ndim - 2) + (smoothing, smoothing)
        residual = gaussian_filter(images, sigma, mode="constant", truncate=TRUNCATE).reshape(n, -1)
    squared = residual**2
    d = squared.shape[1]
    k = max(1, round(top_fraction * d))
    if k < d:
        squared = np.partition(squared, d - k, axis=1)[:, d - k :]
    return np.mean(squared, axis=1)


def score_rule(smoothing: float, image_shape: Sequence[int] | None, top_fraction: float) -> ScoreFn:
    """`anomaly_scores` with the rule fixed: the one function `evaluate`, PCA and serving score with."""
    return partial(anomaly_scores, smoothing=smoothing, image_shape=image_shape, top_fraction=top_fraction)
