"""Score raw feature rows: preprocessing (the train-fitted scaler), the network, the scoring rule and threshold.

Pure torch/numpy/pandas, no MLflow: the pyfunc wraps it; evaluation's promotion scores, batch scoring
and monitoring reuse it through the model they load.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from aeops.models.ensemble import reconstruct_members
from aeops.scoring.bundle import ModelBundle
from aeops.scoring.preprocess import InputError
from aeops.scoring.profile import Profile
from aeops.scoring.rule import anomaly_scores

OUTPUTS = ("scores", "reconstruction")
MAX_MISSING_SHARE = 0.5  # a row missing more than this share of its input columns is `mostly_missing`
__all__ = ["OUTPUTS", "InputError", "Scorer"]


class Scorer:
    """Scores raw rows with a `ModelBundle`: scaler, network, scoring rule and threshold."""

    def __init__(self, bundle: ModelBundle):
        if bundle.scoring is None:
            raise ValueError("a Scorer needs a bundle with a scoring rule (evaluate adds it)")
        self.model = bundle.network()
        self.preprocessor = bundle.preprocessor
        self.rule = bundle.rule_scorer()
        self.threshold = float(bundle.scoring.threshold)
        self.features = self.preprocessor.features
        self.latent_dim = bundle.latent_dim
        self.ensemble = bundle.members > 1
        self.expected_flagged = bundle.scoring.expected_flagged  # share of normal rows above the threshold
        self.profile = Profile.from_dict(bundle.profile) if bundle.profile else None
        self.layout = self.rule.layout

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """Validated raw float32 feature matrix in the training column order."""
        return self.preprocessor.matrix(df)

    def outside(self, x: np.ndarray) -> np.ndarray:
        """(rows, features): which raw values lie outside the training range (± the margin); none if unknown."""
        return self.preprocessor.outside(x)

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
        """Per row: anomaly_score (the evaluated rule), is_anomaly, reconstruction_error (plain MSE, one term per
        feature), score_percentile (rank among normal validation scores, 0–100; NaN without a profile),
        out_of_range (features outside the training range ± 10 % of its span), missing (empty cells: imputed,
        not scored), unseen_levels (categorical values training never saw: scored), mostly_missing (more
        than half the input columns empty: the score says little), z_0..z_k.

        With output="reconstruction": the reconstructed rows in raw units instead (a categorical column's
        most likely level).
        """
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
        rows = self.preprocessor.rows(df)
        raw = rows.raw
        x = torch.from_numpy(self.preprocessor.scale(raw))
        z = self.model.encode(x)
        recon = self.model.decode(z)
        if output == "reconstruction":
            return self.preprocessor.frame(recon.numpy()).set_axis(df.index)
        x, recon = x.numpy(), recon.numpy()
        # an ensemble's members all score; a single network's reconstruction is already at hand
        members = reconstruct_members(self.model, torch.from_numpy(x)).numpy() if self.ensemble else recon[None]
        if rows.imputed is not None and rows.imputed.any():  # a filled-in value has no residual
            recon = np.where(rows.imputed, x, recon)
            members = np.where(rows.imputed[None], x[None], members)
        score, err = self.rule(x, members), anomaly_scores(x, recon, layout=self.layout)  # float64, as in evaluate
        percentile = self.profile.score_percentile(score) if self.profile else np.full(len(score), np.nan)
        codes = z.numpy().astype(np.float64)
        columns = {"anomaly_score": score, "is_anomaly": score > self.threshold, "reconstruction_error": err,
                   "score_percentile": percentile, "out_of_range": self.out_of_range(raw).astype(np.int64),
                   "missing": rows.missing, "unseen_levels": rows.unseen,
                   "mostly_missing": rows.missing > MAX_MISSING_SHARE * len(self.features),
                   **{f"z_{i}": codes[:, i] for i in range(codes.shape[1])}}
        return pd.DataFrame(columns, index=df.index)  # at once: one insert per z column cost 0.25 ms each

