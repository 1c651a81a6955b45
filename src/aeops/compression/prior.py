"""The latent prior: each code dimension's training distribution, from which every step's symbol table follows.

Stored in the model bundle (`prior.json`) so that the encoder and the decoder derive bit-identical
probability tables from the same numbers. Per dimension it keeps the median, the standard deviation
and QUANTILES quantiles of the training codes; for a quantisation step Δ = step · std the
probability of bin k is the mass of the piecewise-linear quantile CDF over [c + (k − ½)Δ, c + (k + ½)Δ],
mixed with 1 % of a Gaussian so that test codes beyond the training range stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aeops.errors import DataError

QUANTILES = 129
MAX_ROWS = 20_000  # training codes the quantiles are taken from (a seeded subsample beyond this)
MARGIN = 0.5  # the alphabet covers the training range ± this share of its span; codes beyond are clipped
GAUSS_WEIGHT = 0.01
MAX_ALPHABET = 65_536  # per dimension (constriction's categorical tables are dense)


def fit_prior(codes: np.ndarray, pixel_max: float = 255.0, seed: int = 0) -> dict[str, Any]:
    """The prior of (rows, latent_dim) training codes, as a JSON-ready dict.

    `pixel_max`: the raw value of a white pixel in the training data (255 for 8-bit images, 16 for
    scikit-learn's digits); compress maps 8-bit image files onto it.
    """
    codes = np.asarray(codes, np.float64)
    if len(codes) > MAX_ROWS:
        codes = codes[np.random.default_rng(seed).choice(len(codes), MAX_ROWS, replace=False)]
    levels = np.linspace(0, 1, QUANTILES)
    std = codes.std(0)
    span = codes.max(0) - codes.min(0)
    return {
        "center": np.median(codes, 0).tolist(),
        "std": np.maximum(std, 1e-6 * np.maximum(span, 1.0)).tolist(),
        "quantiles": np.quantile(codes, levels, axis=0).T.tolist(),  # (latent_dim, QUANTILES)
        "rows": int(len(codes)),
        "pixel_max": float(pixel_max),
    }


@dataclass(frozen=True)
class SymbolTable:
    """Per dimension: the bin width, the lowest symbol's offset and the bins' probabilities."""

    center: np.ndarray  # (d,)
    delta: np.ndarray  # (d,) bin width in code units
    low: np.ndarray  # (d,) integer bin index of symbol 0
    probabilities: list[np.ndarray]  # d arrays, one per dimension (alphabets differ in length)

    def quantise(self, codes: np.ndarray) -> tuple[np.ndarray, int]:
        """(rows, d) int32 symbols in [0, alphabet) and how many codes fell outside the alphabet (clipped)."""
        k = np.rint((codes - self.center) / self.delta).astype(np.int64) - self.low
        top = np.asarray([len(p) - 1 for p in self.probabilities])
        clipped = int(((k < 0) | (k > top)).sum())
        return np.clip(k, 0, top).astype(np.int32), clipped

    def dequantise(self, symbols: np.ndarray) -> np.ndarray:
        """Bin centres in code units."""
        return self.center + (symbols.astype(np.float64) + self.low) * self.delta


def symbol_table(prior: dict[str, Any], step: float) -> SymbolTable:
    """The bins and their probabilities for a step (in units of each dimension's training std)."""
    if not step > 0:
        raise DataError(f"step {step}: must be > 0 (a share of each latent's training std, e.g. 0.1)")
    center, std = np.asarray(prior["center"]), np.asarray(prior["std"])
    quantiles = np.asarray(prior["quantiles"])
    delta = step * std
    span = quantiles[:, -1] - quantiles[:, 0]
    low = np.floor((quantiles[:, 0] - MARGIN * span - center) / delta).astype(np.int64)
    high = np.ceil((quantiles[:, -1] + MARGIN * span - center) / delta).astype(np.int64)
    if (high - low + 1).max() > MAX_ALPHABET:
        raise DataError(f"step {step}: too fine for this model ({int((high - low + 1).max())} bins in a latent, "
                        f"at most {MAX_ALPHABET}); use a larger step")
    levels = np.linspace(0, 1, quantiles.shape[1])
    probs = []
    for j in range(len(center)):
        edges = center[j] + (np.arange(low[j], high[j] + 2) - 0.5) * delta[j]
        cdf = _monotone_interp(edges, quantiles[j], levels)
        gauss = _normal_cdf((edges - center[j]) / std[j])
        p = (1 - GAUSS_WEIGHT) * np.diff(cdf) + GAUSS_WEIGHT * np.diff(gauss)
        probs.append(p / p.sum())
    return SymbolTable(center, delta, low, probs)


def _monotone_interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """The quantile CDF at x; a repeated quantile (an atom, e.g. a ReLU's zeros) keeps its highest level."""
    last = len(xp) - 1 - np.unique(xp[::-1], return_index=True)[1]
    return np.interp(x, xp[last], fp[last], left=0.0, right=1.0)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)
