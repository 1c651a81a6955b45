"""The latent prior: a transform of the codes in which quantisation error is even, and each coordinate's distribution.

Transform coding in the decoder's metric. G = E[Jᵀ J] / pixels, with J the decoder's Jacobian in
8-bit gray levels at training codes, says how much each direction in code space moves the image.
The codes are mapped to f = (z − mean) · T with T = G^½ · R (R rotates onto the principal axes
of G^½-scaled codes): a unit step along any coordinate of f moves the image by about one gray level
RMS per pixel, and the coordinates are decorrelated, so coding them independently wastes little.
A uniform step Δ on every coordinate then adds about Δ·√(d/12) gray levels RMS, whatever the
latent's scale; directions the decoder ignores collapse to one bin and cost no bits.
Per coordinate the prior keeps the median, std and QUANTILES quantiles of the training f. The
probability of bin k is the mass of the piecewise-linear quantile CDF over [c + (k − ½)Δ, c + (k + ½)Δ],
mixed with 1 % of a Gaussian so that codes beyond the training range stay cheap.
Stored in the model bundle (`prior.json`): encoder and decoder derive identical tables from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aeops.errors import DataError

QUANTILES = 129
MAX_ROWS = 20_000  # training codes the quantiles are taken from (a seeded subsample beyond this)
METRIC_ROWS = 256  # training codes the decoder's Jacobian is averaged over
MARGIN = 0.5  # the alphabet covers the training range ± this share of its span; codes beyond are clipped
GAUSS_WEIGHT = 0.01
MAX_ALPHABET = 65_536  # per coordinate (constriction's categorical tables are dense)
FORMAT = 1  # of prior.json; `aeops compress` refuses others
JVP_VALUES = 1 << 22  # Jacobian entries per pass (16 MB of float32)
EIGEN_FLOOR = 1e-10  # relative: directions the decoder ignores keep a tiny weight (T stays invertible)


def decoder_metric(decode: Any, codes: np.ndarray, pixel_gain: np.ndarray, seed: int = 0) -> np.ndarray:
    """G = mean over codes of Jᵀ J / pixels, J = d(image in gray levels)/dz; (d, d).

    J·e_j for every latent j at once: each row repeated d times, the unit vectors as tangents, and the
    Jacobian-vector products taken by reverse mode twice (the gradient of uᵀJ with respect to u). Forward
    mode (`torch.func.jvp`) gives the same G, but its first call imports 2.7 s of torch internals and
    one call per latent was 4x slower on a small conv decoder.
    """
    import torch

    rng = np.random.default_rng(seed)
    rows = codes if len(codes) <= METRIC_ROWS else codes[rng.choice(len(codes), METRIC_ROWS, replace=False)]
    gain = torch.as_tensor(np.broadcast_to(pixel_gain, (int(np.size(pixel_gain)),)).copy(), dtype=torch.float32)
    d, pixels, metric = codes.shape[1], gain.numel(), np.zeros((codes.shape[1], codes.shape[1]))
    step = max(1, min(len(rows), JVP_VALUES // (d * pixels)))
    for start in range(0, len(rows), step):
        z = torch.as_tensor(rows[start:start + step], dtype=torch.float32)
        with torch.enable_grad():
            zr = z.repeat_interleave(d, 0).requires_grad_(True)
            out = decode(zr).reshape(len(zr), -1) * gain
            u = torch.zeros_like(out, requires_grad=True)
            (vjp,) = torch.autograd.grad(out, zr, grad_outputs=u, create_graph=True)  # Jᵀu, linear in u
            (jv,) = torch.autograd.grad(vjp, u, grad_outputs=torch.eye(d).repeat(len(z), 1))  # J·e_j per row
        jac = jv.detach().double().reshape(len(z), d, pixels)  # (rows, d, pixels)
        metric += torch.einsum("rip,rjp->ij", jac, jac).numpy()
    return metric / (len(rows) * pixels)


def fit_prior(codes: np.ndarray, metric: np.ndarray | None = None, pixel_max: float = 255.0,
              seed: int = 0) -> dict[str, Any]:
    """The prior of (rows, d) training codes as a JSON-ready dict; `metric` None = the identity.

    `pixel_max`: the raw value of a white pixel in the training data (255 for 8-bit images, 16 for
    scikit-learn's digits); compress maps 8-bit image files onto it.
    """
    codes = np.asarray(codes, np.float64)
    if len(codes) > MAX_ROWS:
        codes = codes[np.random.default_rng(seed).choice(len(codes), MAX_ROWS, replace=False)]
    d = codes.shape[1]
    mean = codes.mean(0)
    if metric is None:
        metric = np.eye(d)
    vals, vecs = np.linalg.eigh((metric + metric.T) / 2)
    vals = np.maximum(vals, EIGEN_FLOOR * max(vals.max(), 1e-30))
    root = vecs @ np.diag(np.sqrt(vals)) @ vecs.T  # G^½
    _, rotation = np.linalg.eigh(np.cov(((codes - mean) @ root).T).reshape(d, d))
    transform = root @ rotation[:, ::-1]  # largest variance first
    f = (codes - mean) @ transform
    levels = np.linspace(0, 1, QUANTILES)
    span = f.max(0) - f.min(0)
    return {
        "format": FORMAT, "mean": mean.tolist(), "transform": transform.tolist(),
        "center": np.median(f, 0).tolist(),
        "std": np.maximum(f.std(0), 1e-9 * np.maximum(span, 1.0)).tolist(),
        "quantiles": np.quantile(f, levels, axis=0).T.tolist(),  # (d, QUANTILES)
        "rows": int(len(codes)), "pixel_max": float(pixel_max),
    }


def build_prior(network: Any, codes: np.ndarray, scaler: dict[str, Any], pixel_max: float) -> dict[str, Any]:
    """The prior of a trained image network from its training codes (what `evaluate` stores in the bundle)."""
    gain = np.asarray(scaler["scale"], np.float64) * 255.0 / pixel_max  # scaled output → 8-bit gray levels
    return fit_prior(codes, decoder_metric(network.decode, codes, gain), pixel_max)


@dataclass(frozen=True)
class SymbolTable:
    """The transform, and per coordinate the lowest symbol's bin index and the bins' probabilities."""

    mean: np.ndarray  # (d,)
    transform: np.ndarray  # (d, d)
    center: np.ndarray  # (d,)
    delta: float  # bin width in f units
    low: np.ndarray  # (d,) integer bin index of symbol 0
    probabilities: list[np.ndarray]  # d arrays (alphabets differ in length)

    def quantise(self, codes: np.ndarray) -> tuple[np.ndarray, int]:
        """(rows, d) int32 symbols in [0, alphabet) and how many fell outside the alphabet (clipped)."""
        f = (np.asarray(codes, np.float64) - self.mean) @ self.transform
        k = np.rint((f - self.center) / self.delta).astype(np.int64) - self.low
        top = np.asarray([len(p) - 1 for p in self.probabilities])
        clipped = int(((k < 0) | (k > top)).sum())
        return np.clip(k, 0, top).astype(np.int32), clipped

    def dequantise(self, symbols: np.ndarray) -> np.ndarray:
        """Codes at the bin centres."""
        f = self.center + (symbols.astype(np.float64) + self.low) * self.delta
        return np.linalg.solve(self.transform.T, f.T).T + self.mean


def symbol_table(prior: dict[str, Any], error: float) -> SymbolTable:
    """The bins and their probabilities for a quantisation error of about `error` gray levels RMS per pixel."""
    if not error > 0:
        raise DataError(f"error {error}: must be > 0 (gray levels RMS the quantisation may add, e.g. 2)")
    center, std = np.asarray(prior["center"]), np.asarray(prior["std"])
    quantiles = np.asarray(prior["quantiles"])
    delta = float(error * np.sqrt(12.0 / len(center)))  # d coordinates of uniform noise Δ²/12 each
    span = quantiles[:, -1] - quantiles[:, 0]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        low_f = np.floor((quantiles[:, 0] - MARGIN * span - center) / delta)
        high_f = np.ceil((quantiles[:, -1] + MARGIN * span - center) / delta)
        bins = float(np.max(high_f - low_f + 1))
    if not np.isfinite(bins) or bins > MAX_ALPHABET:  # checked in floats: a tiny error overflows int64
        raise DataError(f"error {error}: too fine for this model ({bins:.3g} bins in a coordinate, at most "
                        f"{MAX_ALPHABET}); use a larger error")
    low, high = low_f.astype(np.int64), high_f.astype(np.int64)
    levels = np.linspace(0, 1, quantiles.shape[1])
    probs = []
    for j in range(len(center)):
        edges = center[j] + (np.arange(low[j], high[j] + 2) - 0.5) * delta
        cdf = _monotone_interp(edges, quantiles[j], levels)
        gauss = _normal_cdf((edges - center[j]) / std[j])
        p = (1 - GAUSS_WEIGHT) * np.diff(cdf) + GAUSS_WEIGHT * np.diff(gauss)
        probs.append(p / p.sum())
    return SymbolTable(np.asarray(prior["mean"]), np.asarray(prior["transform"]), center, delta, low, probs)


def _monotone_interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """The quantile CDF at x; a repeated quantile (an atom, e.g. a ReLU's zeros) keeps its highest level."""
    last = len(xp) - 1 - np.unique(xp[::-1], return_index=True)[1]
    return np.interp(x, xp[last], fp[last], left=0.0, right=1.0)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)
