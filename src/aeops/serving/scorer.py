"""Score raw feature rows: preprocessing (the train-fitted scaler), the network and the threshold.

Pure torch/numpy/pandas, no MLflow: the pyfunc wraps it, promotion and batch scoring reuse it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from aeops.bundle import ModelBundle
from aeops.data.prepared import apply_scaler, invert_scaler
from aeops.evaluation.neighbors import fuse, knn_distances, knn_index
from aeops.evaluation.scoring import anomaly_scores, score_rule
from aeops.models.ensemble import reconstruct_members
from aeops.monitoring.profile import Profile

OUTPUTS = ("scores", "reconstruction")
# Raw values more than this many training scales from the training offset are refused: no real
# feature lies there (1e30 would score 1e57), while heavy-tailed anomalies (|z| ~ 1e3) still score.
MAX_SCALED = 1e6
RANGE_MARGIN = 0.1  # a value counts as out of range beyond min/max ± 10 % of the training span


class InputError(ValueError):
    """The request's data cannot be scored (the message says why and what is expected)."""


class Scorer:
    """Scores raw rows with a `ModelBundle`: scaler, network, scoring rule and threshold."""

    def __init__(self, bundle: ModelBundle):
        if bundle.scoring is None:
            raise ValueError("a Scorer needs a bundle with a scoring rule (evaluate adds it)")
        self.model = bundle.network()
        self.scaler, self.threshold = bundle.scaler, float(bundle.scoring.threshold)
        rule = bundle.scoring
        scale = None if rule.residual_scale is None else np.asarray(rule.residual_scale, np.float64)
        self.anomaly_score = score_rule(rule.smoothing, bundle.image_shape, rule.top_fraction, scale)
        self.neighbors = None if not rule.neighbors else knn_index(np.asarray(bundle.reference, np.float64), rule.neighbors)
        self.fusion = rule.fusion
        self.features = bundle.feature_names
        self.ignored = set(self.scaler.get("ignored_features", []))  # dropped by prepare: accepted, unused
        self.latent_dim = bundle.latent_dim
        self.ensemble = bundle.members > 1
        self.expected_flagged = bundle.scoring.expected_flagged  # share of normal rows above the threshold
        self.profile = Profile.from_dict(bundle.profile) if bundle.profile else None
        self.range = None
        if "train_min" in self.scaler:
            lo, hi = np.asarray(self.scaler["train_min"]), np.asarray(self.scaler["train_max"])
            span = np.maximum(hi - lo, np.abs(np.asarray(self.scaler["scale"])) * 1e-6)
            self.range = (lo - RANGE_MARGIN * span, hi + RANGE_MARGIN * span)

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """Validated float32 feature matrix in the training column order."""
        if not isinstance(df, pd.DataFrame):
            raise InputError(f"expected a table with columns {_cols(self.features)}, got {type(df).__name__}")
        if len(df) == 0:
            raise InputError("the input has no rows")
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise InputError(f"missing column(s) {_cols(missing)}; expected {_cols(self.features)}")
        extra = [str(c) for c in df.columns if c not in set(self.features) and c not in self.ignored]
        if extra:
            raise InputError(f"unexpected column(s) {_cols(extra)}; expected {_cols(self.features)}")
        try:
            x = df[self.features].to_numpy(dtype=np.float32)
        except (TypeError, ValueError):
            bad = [c for c in self.features if not pd.api.types.is_numeric_dtype(df[c])]
            raise InputError(f"non-numeric values in column(s) {_cols(bad)}; expected numbers") from None
        finite = np.isfinite(x)
        if not finite.all():
            cols = [self.features[j] for j in np.flatnonzero(~finite.all(0))]
            raise InputError(f"NaN or infinite values in column(s) {_cols(cols)}")
        far = np.abs(apply_scaler(self.scaler, x)) > MAX_SCALED
        if far.any():
            j = int(np.flatnonzero(far.any(0))[0])
            cols = [self.features[k] for k in np.flatnonzero(far.any(0))]
            raise InputError(
                f"values beyond {MAX_SCALED:.0e} training scales in column(s) {_cols(cols)} "
                f"(e.g. {self.features[j]} = {x[far[:, j], j][0]:.3g}); send raw values in the training data's units"
            )
        return x

    def outside(self, x: np.ndarray) -> np.ndarray:
        """(rows, features): which raw values lie outside the training range (± the margin); none if unknown."""
        if self.range is None:
            return np.zeros(x.shape, dtype=bool)
        lo, hi = self.range
        return (x < lo) | (x > hi)

    def out_of_range(self, x: np.ndarray) -> np.ndarray:
        """Per row: how many raw features lie outside the training range (± the margin); zeros if unknown."""
        return self.outside(x).sum(axis=1)

    def batch_warnings(self, rows: int, out_of_range_rows: int, flagged: int) -> list[str]:
        """Warnings for a whole batch: mostly out-of-range or mostly flagged rows point at wrong units."""
        found = []
        if rows and out_of_range_rows / rows > 0.5:
            found.append(
                f"{out_of_range_rows / rows:.0%} of rows have features outside the training range: the input "
                "looks pre-scaled or in other units; send raw values as in the training data"
            )
        expected = self.expected_flagged if self.expected_flagged is not None else 0.05
        if rows and flagged / rows > max(0.5, 3 * expected):
            found.append(
                f"{flagged / rows:.0%} of rows score above the threshold (expected about {expected:.0%} on normal "
                "data): is the input in raw units (not pre-scaled, e.g. not data/prepared/*.parquet)?"
            )
        return found

    @torch.no_grad()
    def score(self, df: pd.DataFrame, output: str = "scores") -> pd.DataFrame:
        """Per row: anomaly_score (the evaluated rule), is_anomaly, reconstruction_error (plain MSE),
        score_percentile (rank among normal validation scores, 0–100; NaN without a profile),
        out_of_range (features outside the training range ± 10 % of its span), z_0..z_k.

        With output="reconstruction": the reconstructed rows in raw units instead.
        """
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
        raw = self.matrix(df)
        x = torch.from_numpy(apply_scaler(self.scaler, raw))
        z = self.model.encode(x)
        recon = self.model.decode(z)
        if output == "reconstruction":
            return pd.DataFrame(invert_scaler(self.scaler, recon.numpy()), columns=self.features, index=df.index)
        x, recon = x.numpy(), recon.numpy()
        # an ensemble's members all score; a single network's reconstruction is already at hand
        members = reconstruct_members(self.model, torch.from_numpy(x)).numpy() if self.ensemble else recon[None]
        score, err = self.anomaly_score(x, members), anomaly_scores(x, recon)  # float64, as in evaluate
        if self.neighbors is not None:  # the rule's kNN term, fused as evaluate fused it
            score = fuse(score, knn_distances(self.neighbors, x.astype(np.float64)), self.fusion)
        percentile = self.profile.score_percentile(score) if self.profile else np.full(len(score), np.nan)
        codes = z.numpy().astype(np.float64)
        columns = {"anomaly_score": score, "is_anomaly": score > self.threshold, "reconstruction_error": err,
                   "score_percentile": percentile, "out_of_range": self.out_of_range(raw).astype(np.int64),
                   **{f"z_{i}": codes[:, i] for i in range(codes.shape[1])}}
        return pd.DataFrame(columns, index=df.index)  # at once: one insert per z column cost 0.25 ms each


def _cols(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', …' if len(names) > limit else ''}] ({len(names)})"
