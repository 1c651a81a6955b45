"""Preprocessing: raw rows in → the model's scaled float32 inputs, validated, and back to raw units.

The train-fitted scaler is a JSON object (`scaler.json`, and the bundle's `bundle.json`):
`{"kind", "feature_names", "offset", "scale", "train_min", "train_max", "ignored_features"}`, with
x_scaled = (x - offset) / scale. A table's scaler adds "columns" (aeops.scoring.columns: how each raw
column is encoded, categorical and missing cells included) and "roles"; its `feature_names` are then the
encoded columns. `Preprocessor` is its typed form; prepare fits it, every consumer of scores
(evaluation, serving, monitoring, compression) applies it through here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from aeops.errors import DataError
from aeops.scoring.columns import ColumnError, EncodedRows, TableColumns

# Raw values more than this many training scales from the training offset are refused: no real
# feature lies there (1e30 would score 1e57), while heavy-tailed anomalies (|z| ~ 1e3) still score.
MAX_SCALED = 1e6
RANGE_MARGIN = 0.1  # a value counts as out of range beyond min/max ± 10 % of the training span


class InputError(ValueError):
    """The rows cannot be scored (the message says why and what is expected)."""


def scaler_arrays(scaler: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) as float64, checked against the width of `x`."""
    offset = np.asarray(scaler["offset"], dtype=np.float64)
    scale = np.asarray(scaler["scale"], dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(offset):
        raise DataError(f"scaler expects (n, {len(offset)}) features, got shape {x.shape}")
    return offset, scale


def apply_scaler(scaler: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Scale raw features: (x - offset) / scale, as float32."""
    offset, scale = scaler_arrays(scaler, x)
    return ((np.asarray(x, dtype=np.float64) - offset) / scale).astype(np.float32)


def invert_scaler(scaler: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Back to raw units: x * scale + offset, as float32 (e.g. for reconstructions)."""
    offset, scale = scaler_arrays(scaler, x)
    return (np.asarray(x, dtype=np.float64) * scale + offset).astype(np.float32)


class Preprocessor:
    """The scaler of one model, typed: column checks, scaling both ways, the training range."""

    def __init__(self, scaler: dict[str, Any]):
        self.scaler = scaler
        self.encoded: list[str] = list(scaler["feature_names"])  # the model's input columns
        self.table = TableColumns.from_dict(scaler["columns"]) if scaler.get("columns") else None
        self.features: list[str] = self.table.inputs if self.table is not None else self.encoded  # what users send
        self.layout: dict[str, Any] | None = self.table.layout() if self.table is not None and self.table.mixed else None
        self.ignored = set(scaler.get("ignored_features", []))  # dropped by prepare: accepted, unused
        self.range: tuple[np.ndarray, np.ndarray] | None = None
        if "train_min" in scaler:
            lo, hi = np.asarray(scaler["train_min"]), np.asarray(scaler["train_max"])
            span = np.maximum(hi - lo, np.abs(np.asarray(scaler["scale"])) * 1e-6)
            self.range = (lo - RANGE_MARGIN * span, hi + RANGE_MARGIN * span)

    def scale(self, x: np.ndarray) -> np.ndarray:
        return apply_scaler(self.scaler, x)

    def unscale(self, x: np.ndarray) -> np.ndarray:
        """Back to raw units, as `matrix` gives them: float64 for a table (large values keep their digits), float32
        for pixels."""
        if self.table is None:
            return invert_scaler(self.scaler, x)
        offset, scale = scaler_arrays(self.scaler, x)
        return np.asarray(x, np.float64) * scale + offset

    def frame(self, x: np.ndarray) -> pd.DataFrame:
        """Scaled model inputs (or reconstructions) as the raw columns a user sends (a level for a categorical one)."""
        if self.table is None:
            return pd.DataFrame(self.unscale(x), columns=self.features)
        return self.table.decode(self.unscale(x))

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """The rows' validated raw float32 features (encoded, for a table) in the training column order."""
        return self.rows(df).raw

    def rows(self, df: pd.DataFrame) -> EncodedRows:
        """The rows' validated raw float32 features in the training column order, with their missing cells and
        unseen levels per row (`InputError` says what is wrong)."""
        if not isinstance(df, pd.DataFrame):
            raise InputError(f"expected a table with columns {cols(self.features)}, got {type(df).__name__}")
        if len(df) == 0:
            raise InputError("the input has no rows")
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise InputError(f"missing column(s) {cols(missing)}; expected {cols(self.features)}")
        extra = [str(c) for c in df.columns if c not in set(self.features) and c not in self.ignored]
        if extra:
            raise InputError(f"unexpected column(s) {cols(extra)}; expected {cols(self.features)}")
        if self.table is not None:
            try:
                encoded = self.table.encode(df)
            except ColumnError as err:
                raise InputError(str(err)) from None
            self._check_far(encoded.raw)  # float64 until scaled: a large raw value keeps its digits
            return encoded
        try:
            x = df[self.features].to_numpy(dtype=np.float32)
        except (TypeError, ValueError):
            bad = [c for c in self.features if not pd.api.types.is_numeric_dtype(df[c])]
            raise InputError(f"non-numeric values in column(s) {cols(bad)}; expected numbers") from None
        finite = np.isfinite(x)
        if not finite.all():
            names = [self.features[j] for j in np.flatnonzero(~finite.all(0))]
            raise InputError(f"NaN or infinite values in column(s) {cols(names)}")
        self._check_far(x)
        none = np.zeros(len(x), np.int64)
        return EncodedRows(x, none, none)

    def _check_far(self, x: np.ndarray) -> None:
        far = np.abs(self.scale(x)) > MAX_SCALED
        if far.any():
            j = int(np.flatnonzero(far.any(0))[0])
            names = [self.encoded[k] for k in np.flatnonzero(far.any(0))]
            raise InputError(
                f"values beyond {MAX_SCALED:.0e} training scales in column(s) {cols(names)} "
                f"(e.g. {self.encoded[j]} = {x[far[:, j], j][0]:.3g}); send raw values in the training data's units"
            )

    def outside(self, x: np.ndarray) -> np.ndarray:
        """(rows, features): which raw values lie outside the training range (± the margin); none if unknown."""
        if self.range is None:
            return np.zeros(x.shape, dtype=bool)
        lo, hi = self.range
        return (x < lo) | (x > hi)


def cols(names: list[str], limit: int = 8) -> str:
    """Column names for a one-line message: the first `limit`, and how many there are."""
    shown = ", ".join(names[:limit])
    return f"[{shown}{', …' if len(names) > limit else ''}] ({len(names)})"
