"""The autoencoder's anomaly score: per-row mean squared residual, optionally smoothed, standardised, pooled.

`smoothing` (sigma in pixels) Gaussian-smooths each image's residual before squaring: a coherent
missing or extra part (a different shape) keeps its energy while scattered one-pixel misalignments
of strokes average out. `scale` divides each feature's residual by its typical size on normal
validation rows (`residual_scale`), so a feature the model reconstructs well counts as much as a
noisy one and no single heavy-tailed feature dominates. `top_fraction` < 1 averages only the largest
squared values of each row (the worst region). An ensemble's score is the mean of its members'.
What each buys is measured in `benchmarks/quality.py` and `benchmarks/tabular.py` (README).
Shared by `evaluate`, the baselines and serving.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
from scipy.ndimage import gaussian_filter

TRUNCATE = 3.0  # kernel radius = round(3 sigma)
SCALE_FLOOR = 1e-3  # a feature's residual scale is at least this share of the member's overall one
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x, recon) -> (n,) scores


def _residuals(x: np.ndarray, recon: np.ndarray, smoothing: float, image_shape: Sequence[int] | None) -> np.ndarray:
    """(members, n, features) float64 residuals; `recon` is (n, ...) or (members, n, ...)."""
    n = len(x)
    flat = np.asarray(x, np.float64).reshape(n, -1)
    recon = np.asarray(recon, np.float64)
    members = len(recon) if recon.ndim == np.ndim(x) + 1 else 1
    residual = flat[None] - recon.reshape(members, n, -1)
    if smoothing > 0:
        if image_shape is None:
            raise ValueError("score smoothing needs image data (an image_shape); use 0 for tables")
        images = residual.reshape(*residual.shape[:2], *image_shape)
        sigma = (0,) * (images.ndim - 2) + (smoothing, smoothing)
        residual = gaussian_filter(images, sigma, mode="constant", truncate=TRUNCATE).reshape(residual.shape)
    return residual


def residual_scale(
    x: np.ndarray, recon: np.ndarray, smoothing: float = 0.0, image_shape: Sequence[int] | None = None
) -> np.ndarray:
    """(members, features): each feature's root-mean-square residual on these (normal validation) rows."""
    rms = np.sqrt(np.mean(_residuals(x, recon, smoothing, image_shape) ** 2, axis=1))
    floor = SCALE_FLOOR * np.sqrt(np.mean(rms**2, axis=1, keepdims=True))
    return np.maximum(rms, np.maximum(floor, np.finfo(np.float64).tiny))


def anomaly_scores(
    x: np.ndarray,
    recon: np.ndarray,
    smoothing: float = 0.0,
    image_shape: Sequence[int] | None = None,
    top_fraction: float = 1.0,
    scale: np.ndarray | Sequence[Sequence[float]] | None = None,
) -> np.ndarray:
    """(n,) float64 scores; `recon` (n, ...) or an ensemble's (members, n, ...); `scale` (members, features)."""
    residual = _residuals(x, recon, smoothing, image_shape)
    if scale is not None:
        scale = np.asarray(scale, np.float64)
        if scale.shape != (residual.shape[0], residual.shape[2]):
            raise ValueError(f"residual scale of shape {scale.shape} for {residual.shape[0]} member(s) x "
                             f"{residual.shape[2]} features")
        residual = residual / scale[:, None, :]
    squared = residual**2
    d = squared.shape[2]
    k = max(1, round(top_fraction * d))
    if k < d:
        squared = np.partition(squared, d - k, axis=2)[:, :, d - k :]
    return np.mean(squared, axis=(0, 2))


def score_rule(
    smoothing: float, image_shape: Sequence[int] | None, top_fraction: float, scale: np.ndarray | None = None
) -> ScoreFn:
    """`anomaly_scores` with the rule fixed: the one function `evaluate`, PCA and serving score with."""
    return partial(anomaly_scores, smoothing=smoothing, image_shape=image_shape, top_fraction=top_fraction,
                   scale=scale)
