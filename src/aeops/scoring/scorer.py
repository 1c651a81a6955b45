"""Score raw feature rows: preprocessing (the train-fitted scaler), the network, the scoring rule and threshold.

Pure torch/numpy/pandas, no MLflow: the pyfunc wraps it; evaluation's promotion scores, batch scoring
and monitoring reuse it through the model they load.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from aeops.models.autoencoder import Autoencoder
from aeops.models.ensemble import reconstruct_members
from aeops.scoring.bundle import ModelBundle
from aeops.scoring.columns import EncodedRows
from aeops.scoring.preprocess import InputError
from aeops.scoring.profile import Profile
from aeops.scoring.rule import anomaly_scores, feature_shares

OUTPUTS = ("scores", "reconstruction", "anomaly_map")
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
        nets = getattr(self.model, "members", [self.model])  # scored against their reconstructions, or not
        self.own_target = self.ensemble or any(type(m).score_target is not Autoencoder.score_target for m in nets)
        self.expected_flagged = bundle.scoring.expected_flagged  # share of normal rows above the threshold
        self.profile = Profile.from_dict(bundle.profile) if bundle.profile else None
        self.layout = self.rule.layout
        self.image = bundle.image_shape is not None
        self.image_shape = None if bundle.image_shape is None else tuple(bundle.image_shape)
        self.pixel_threshold = bundle.scoring.pixel_threshold  # images: where the predicted defect mask starts
        self.pixel_max = (bundle.latent_prior or {}).get("pixel_max")  # images: a white pixel's raw value
        self.image_fit = bundle.scaler.get("image_fit", "resize")  # images of another size: resize or center_crop
        # the scored features (a categorical column is one), each with the raw input column it explains and
        # where its value sits in the encoded row
        groups = self.layout.scored if self.layout is not None else []
        self.explained = [g.name for g in groups] if groups else list(self.features)
        self.explained_input = [g.name.rsplit(":", 1)[0] if g.kind == "cyclic" else g.name for g in groups] or self.explained
        self.explained_column = [g.start if g.kind == "numeric" else -1 for g in groups] or list(range(len(self.features)))
        self.text_values = any(g.kind != "numeric" for g in groups)  # observed/expected as text

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

    def check_explain(self, explain: object, output: str = "scores") -> int:
        """The validated `explain` (0 or None = none): a whole number from 1 to the number of features, scores only."""
        if explain is None or (isinstance(explain, (int, np.integer)) and not isinstance(explain, bool) and explain == 0):
            return 0
        n = len(self.explained)
        if self.image:
            raise InputError("explain applies to table models; an image model's scores have no per-feature explanation")
        if output != "scores":
            raise InputError(f"explain applies to output='scores', not {output!r}")
        if isinstance(explain, bool) or not isinstance(explain, (int, np.integer)) or not 1 <= explain <= n:
            raise InputError(f"explain must be a whole number from 1 to {n} (the model's features), got {explain!r}")
        return int(explain)

    @torch.no_grad()
    def score(self, df: pd.DataFrame, output: str = "scores", explain: int = 0) -> pd.DataFrame:
        """Per row: anomaly_score (the evaluated rule), is_anomaly, reconstruction_error (plain MSE, one term per
        feature), score_percentile (rank among normal validation scores, 0–100; NaN without a profile),
        out_of_range (features outside the training range ± 10 % of its span), missing (empty cells: imputed,
        not scored), unseen_levels (categorical values training never saw: scored), mostly_missing (more
        than half the input columns empty: the score says little), z_0..z_k.

        With output="reconstruction": the reconstructed rows in raw units instead (a categorical column's
        most likely level). With output="anomaly_map" (image models): each input value's squared residual
        under the scoring rule (smoothed as the score is; members averaged), in the input's pixel columns:
        where the image is anomalous. With explain=k: also, for the k features with the largest part of each row's
        score (`explain`), explain_i_feature, explain_i_share (its part over the sum of all parts),
        explain_i_observed and explain_i_expected (the sent value and the reconstruction in raw units, the
        most likely level for a categorical column; as text where the model has categorical columns).
        """
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
        if output == "anomaly_map" and not self.image:
            raise InputError("output='anomaly_map' applies to image models; for a table model use explain=k "
                             "(each row's top features)")
        explain = self.check_explain(explain, output)
        rows = self.preprocessor.rows(df)
        raw = rows.raw
        x = torch.from_numpy(self.preprocessor.scale(raw))
        z = self.model.encode(x)
        recon = self.model.decode(z)
        if output == "reconstruction":
            return self.preprocessor.frame(recon.numpy()).set_axis(df.index)
        x, recon = x.numpy(), recon.numpy()
        # an ensemble's members all score (as does a discriminative head); else the reconstruction is at hand
        members = reconstruct_members(self.model, torch.from_numpy(x)).numpy() if self.own_target else recon[None]
        if output == "anomaly_map":  # per pixel (and channel), in the input's columns
            return pd.DataFrame(self.rule.anomaly_map(x, members), columns=self.features, index=df.index)
        expected = self._expected(recon) if explain else None
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
        if explain:
            columns |= self._explanations(df, rows, x, members, expected, explain)  # type: ignore[arg-type]
        return pd.DataFrame(columns, index=df.index)  # at once: one insert per z column cost 0.25 ms each

    def _expected(self, recon: np.ndarray) -> pd.DataFrame:
        """The reconstruction in raw input columns, a numeric value shown even where the network guessed 'missing'."""
        if self.layout is not None and (self.layout.masks >= 0).any():
            recon = recon.copy()
            recon[:, self.layout.masks[self.layout.masks >= 0]] = 0.0
        return self.preprocessor.frame(recon)

    def explanations(self, x: np.ndarray, members: np.ndarray) -> np.ndarray:
        """(n, features): each feature's share of its row's score parts (`RuleScorer.contributions`), summing to 1."""
        return feature_shares(self.rule.contributions(x, members))

    def _explanations(self, df: pd.DataFrame, rows: EncodedRows, x: np.ndarray, members: np.ndarray,
                      expected: pd.DataFrame, k: int) -> dict[str, np.ndarray]:
        share = self.explanations(x, members)
        order = np.argsort(-share, axis=1, kind="stable")[:, :k]
        at = np.arange(len(x))[:, None]
        observed = np.empty((len(x), len(self.explained)), dtype=object if self.text_values else np.float64)
        for j, (name, column) in enumerate(zip(self.explained_input, self.explained_column)):
            if column >= 0:  # a number as the model read it; an empty cell is NaN
                value = rows.raw[:, column].astype(np.float64)
                observed[:, j] = value if rows.imputed is None else np.where(rows.imputed[:, column], np.nan, value)
            else:
                observed[:, j] = df[name].to_numpy(dtype=object)
        wanted = expected[self.explained_input].to_numpy(dtype=object if self.text_values else np.float64)
        out: dict[str, np.ndarray] = {}
        for i in range(k):
            j = order[:, i : i + 1]
            out[f"explain_{i + 1}_feature"] = np.array(self.explained, dtype=object)[j[:, 0]]
            out[f"explain_{i + 1}_share"] = np.take_along_axis(share, j, axis=1)[:, 0]
            for key, values in (("observed", observed), ("expected", wanted)):
                picked = values[at, j][:, 0]
                out[f"explain_{i + 1}_{key}"] = _as_text(picked) if self.text_values else picked
        return out


def _as_text(values: np.ndarray) -> np.ndarray:
    """Values of several columns as text (numbers to 6 significant digits); an empty cell stays None."""
    def text(v: object) -> str | None:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        return f"{v:.6g}" if isinstance(v, (float, np.floating, int, np.integer)) and not isinstance(v, bool) else str(v)

    return np.array([text(v) for v in values], dtype=object)

