"""Score raw feature rows: preprocessing (the train-fitted scaler), the network and the threshold.

Pure torch/numpy/pandas, no MLflow: the pyfunc wraps it, promotion and batch scoring reuse it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from aeops.data.prepared import apply_scaler, invert_scaler
from aeops.evaluation.scoring import anomaly_scores, score_rule
from aeops.models.factory import build_autoencoder

OUTPUTS = ("scores", "reconstruction")


class InputError(ValueError):
    """The request's data cannot be scored (the message says why and what is expected)."""


class Scorer:
    """Everything needed to score raw rows, restored from a plain (weights-only) bundle."""

    def __init__(
        self, bundle: dict[str, Any], scaler: dict[str, Any], threshold: float,
        smoothing: float = 0.0, top_fraction: float = 1.0,
    ):
        self.model = build_autoencoder(
            bundle["model_cfg"], bundle["n_features"],
            tuple(bundle["image_shape"]) if bundle["image_shape"] else None, bundle["unit_interval"],
        )
        self.model.load_state_dict(bundle["state_dict"])
        self.model.eval()
        self.scaler, self.threshold = scaler, float(threshold)
        self.anomaly_score = score_rule(float(smoothing), bundle["image_shape"], float(top_fraction))
        self.features: list[str] = list(scaler["feature_names"])
        self.latent_dim = int(bundle["model_cfg"]["latent_dim"])

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """Validated float32 feature matrix in the training column order."""
        if not isinstance(df, pd.DataFrame):
            raise InputError(f"expected a table with columns {_cols(self.features)}, got {type(df).__name__}")
        if len(df) == 0:
            raise InputError("the input has no rows")
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise InputError(f"missing column(s) {_cols(missing)}; expected {_cols(self.features)}")
        extra = [str(c) for c in df.columns if c not in set(self.features)]
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
        return x

    @torch.no_grad()
    def score(self, df: pd.DataFrame, output: str = "scores") -> pd.DataFrame:
        """Per row: anomaly_score (the evaluated rule), is_anomaly, reconstruction_error (plain MSE), z_0..z_k.

        With output="reconstruction": the reconstructed rows in raw units instead.
        """
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
        x = torch.from_numpy(apply_scaler(self.scaler, self.matrix(df)))
        z = self.model.encode(x)
        recon = self.model.decode(z)
        if output == "reconstruction":
            return pd.DataFrame(invert_scaler(self.scaler, recon.numpy()), columns=self.features, index=df.index)
        x, recon = x.numpy(), recon.numpy()
        score, err = self.anomaly_score(x, recon), anomaly_scores(x, recon)  # float64, as in evaluate
        out = pd.DataFrame(
            {"anomaly_score": score, "is_anomaly": score > self.threshold, "reconstruction_error": err},
            index=df.index,
        )
        codes = z.numpy().astype(np.float64)
        for i in range(codes.shape[1]):
            out[f"z_{i}"] = codes[:, i]
        return out


def _cols(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', …' if len(names) > limit else ''}] ({len(names)})"
