"""The whole served path as one torch module: raw rows → scaling → every member → the scoring rule → outputs.

`ScoringGraph` computes, in torch, what `Scorer.score` computes with numpy (the same float32 network on
the same float32 scaled inputs; the rule in float64), so that it can be exported as one ONNX graph
(`aeops.serving.onnx_export`). Smoothing is a product with banded Gaussian matrices (scipy's
`gaussian_filter`, mode "constant", as two matrix products: exact, in float64, no convolution kernel
needed); the top fraction is a `topk`; the kNN term the distances to the bundle's reference rows from
their squared norms and one matrix product (exact up to rounding), its k smallest averaged.

What it cannot hold is named by `unsupported` (a mixed-type table's text columns: strings have no torch
tensor); validation of the rows (NaN, values far outside training) stays with the caller.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from aeops.models.autoencoder import Autoencoder
from aeops.models.ensemble import reconstruct_members
from aeops.scoring.bundle import ModelBundle
from aeops.scoring.profile import Profile
from aeops.scoring.rule import TRUNCATE

OUTPUT_NAMES = ("anomaly_score", "is_anomaly", "reconstruction_error", "score_percentile", "out_of_range", "z")


def unsupported(bundle: ModelBundle) -> str | None:
    """Why this bundle's scoring cannot be one torch graph, or None."""
    if bundle.scoring is None:
        return "it has no scoring rule yet (run `dvc repro evaluate`)"
    table = bundle.preprocessor.table
    if table is not None and table.mixed:
        kinds = sorted({s.role for s in table.specs if s.role != "numeric"} | ({"missing-value"} if any(
            s.indicator for s in table.specs) else set()))
        return (f"its mixed-type table encoding ({', '.join(kinds)} columns: text levels, dates and empty cells are "
                "encoded in Python before the network)")
    return None


def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) float64 K with K @ v = scipy.ndimage.gaussian_filter1d(v, sigma, mode="constant", truncate=3)."""
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * offsets**2 / sigma**2)
    weights /= weights.sum()
    k = np.zeros((size, size))
    for o, w in zip(offsets, weights):  # out[i] = Σ_o w[o] · in[i + o], zero outside
        k += w * np.eye(size, k=o)
    return k


class ScoringGraph(nn.Module):
    """Raw rows in (one float64 tensor per table column, or one (n, pixels) float32 tensor of raw pixel values),
    the served outputs out: anomaly_score, is_anomaly, reconstruction_error, score_percentile (NaN without a
    profile), out_of_range, z (member 0's code), and for image models anomaly_map."""

    def __init__(self, bundle: ModelBundle):
        super().__init__()
        why = unsupported(bundle)
        if why is not None:
            raise ValueError(f"this model cannot be one graph: {why}")
        rule = bundle.scoring
        assert rule is not None
        self.network = bundle.network()
        nets = getattr(self.network, "members", [self.network])  # scored against their own reconstructions or not
        self.own_target = bundle.members > 1 or any(type(m).score_target is not Autoencoder.score_target for m in nets)
        self.image_shape = None if bundle.image_shape is None else tuple(bundle.image_shape)
        self.input_names = ["pixels"] if self.image_shape else list(bundle.preprocessor.features)
        pre = bundle.preprocessor
        d = bundle.n_features
        f64 = torch.float64
        self.register_buffer("offset", torch.tensor(np.asarray(bundle.scaler["offset"], np.float64), dtype=f64))
        self.register_buffer("scale", torch.tensor(np.asarray(bundle.scaler["scale"], np.float64), dtype=f64))
        lo, hi = pre.range if pre.range is not None else (np.full(d, -np.inf), np.full(d, np.inf))
        self.register_buffer("low", torch.tensor(lo, dtype=f64))
        self.register_buffer("high", torch.tensor(hi, dtype=f64))
        self.threshold = float(rule.threshold)
        self.top = max(1, round(rule.top_fraction * d))
        self.smooth = rule.smoothing > 0
        if self.smooth:
            if self.image_shape is None:
                raise ValueError("score smoothing needs image data")
            _, h, w = self.image_shape
            self.register_buffer("blur_h", torch.tensor(gaussian_matrix(h, rule.smoothing), dtype=f64))
            self.register_buffer("blur_w_t", torch.tensor(gaussian_matrix(w, rule.smoothing).T.copy(), dtype=f64))
        self.scaled = rule.residual_scale is not None
        if self.scaled:
            self.register_buffer("residual_scale", torch.tensor(rule.residual_scale, dtype=f64)[:, None, :])
        self.knn = rule.neighbors > 0
        if self.knn:
            ref = np.asarray(bundle.reference, np.float64).reshape(len(bundle.reference), -1)
            self.k = min(rule.neighbors, len(ref))
            self.register_buffer("reference_t", torch.tensor(ref.T.copy(), dtype=f64))
            self.register_buffer("reference_sq", torch.tensor((ref**2).sum(axis=1), dtype=f64))
            (m1, s1), (m2, s2) = rule.fusion  # type: ignore[misc]
            self.fusion = (float(m1), float(s1), float(m2), float(s2))
        profile = Profile.from_dict(bundle.profile) if bundle.profile else None
        self.percentile = profile is not None
        if profile is not None:
            self.register_buffer("val_scores", torch.tensor(np.asarray(profile.val_scores, np.float64), dtype=f64))

    def forward(self, *columns: Tensor) -> tuple[Tensor, ...]:
        raw = columns[0].to(torch.float64) if self.image_shape else torch.stack(columns, dim=1).to(torch.float64)
        x = ((raw - self.offset) / self.scale).to(torch.float32)  # as apply_scaler: float64 arithmetic, float32 out
        z = self.network.encode(x)
        recon = self.network.decode(z)
        members = reconstruct_members(self.network, x) if self.own_target else recon[None]  # what the rule compares with
        x64 = x.to(torch.float64)
        squared = self._squares(x64, members.to(torch.float64))
        if self.top < squared.shape[2]:
            score = torch.topk(squared, self.top, dim=2).values.mean(dim=(0, 2))
        else:
            score = squared.mean(dim=(0, 2))
        if self.knn:
            near = x64.pow(2).sum(dim=1, keepdim=True) - 2.0 * (x64 @ self.reference_t) + self.reference_sq
            nearest = torch.topk(near.clamp(min=0.0), self.k, dim=1, largest=False).values
            m1, s1, m2, s2 = self.fusion
            score = (score - m1) / s1 + (nearest.sqrt().mean(dim=1) - m2) / s2
        error = (x64 - recon.to(torch.float64)).pow(2).mean(dim=1)
        if self.percentile:
            percentile = 100.0 * (self.val_scores[None, :] <= score[:, None]).to(torch.float64).sum(dim=1) / len(
                self.val_scores)
        else:
            percentile = torch.full_like(score, math.nan)
        outside = ((raw < self.low) | (raw > self.high)).to(torch.int64).sum(dim=1)
        out = (score, score > self.threshold, error, percentile, outside, z)
        return out + (squared.mean(dim=0),) if self.image_shape else out

    def _squares(self, x: Tensor, members: Tensor) -> Tensor:
        """(members, n, d) squared residuals, smoothed and scaled as `aeops.scoring.rule` does."""
        residual = x[None] - members
        if self.smooth:
            shape = residual.shape
            images = residual.reshape(shape[0], shape[1], *self.image_shape)  # type: ignore[misc]
            residual = (self.blur_h @ images @ self.blur_w_t).reshape(shape)
        if self.scaled:
            residual = residual / self.residual_scale
        return residual.pow(2)

    @property
    def output_names(self) -> list[str]:
        return list(OUTPUT_NAMES) + (["anomaly_map"] if self.image_shape else [])
