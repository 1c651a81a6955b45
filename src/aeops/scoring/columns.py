"""A table's columns as the model sees them: raw rows in, the encoded matrix out, and back.

Each used column becomes one or more encoded columns, in "encoded raw units" (the scaler then scales them):
- numeric: the value, a missing cell replaced by the training median; where training had missing
  cells, a 0/1 `<name>:missing` column follows (the loss and the score ignore the imputed value);
- categorical: one-hot over the levels kept in training (those with at least `min_frequency` of the
  rows), one `<name>=(other)` slot for the rare ones, and a reserved `<name>=(unseen)` slot that
  training never fills: a level never seen scores high (a missing cell leaves every slot 0);
- datetime (with `prepare.datetime: cyclic`): sine and cosine of the hour of day and of the weekday (UTC).
`TableColumns` is fitted by prepare (aeops.data.encode) and stored in scaler.json as "columns".
Pure numpy/pandas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

OTHER, UNSEEN, MISSING = "(other)", "(unseen)", ":missing"
CYCLIC = (":hour_sin", ":hour_cos", ":weekday_sin", ":weekday_cos")


class ColumnError(ValueError):
    """A raw column cannot be encoded (the message names it and what is expected)."""


@dataclass(frozen=True)
class ColumnSpec:
    """One raw input column: its role and what training fixed for it."""

    name: str
    role: str  # numeric | categorical | datetime
    fill: float = 0.0  # numeric: what a missing cell becomes (the training median, raw units)
    indicator: bool = False  # numeric: a 0/1 missing column follows (training had missing cells)
    levels: list[str] = field(default_factory=list)  # categorical: the kept levels, in slot order
    other: list[str] = field(default_factory=list)  # categorical: rare training levels, one shared slot

    def names(self) -> list[str]:
        """The encoded column names this column becomes."""
        if self.role == "numeric":
            return [self.name] + ([self.name + MISSING] if self.indicator else [])
        if self.role == "categorical":
            slots = [*self.levels, *([OTHER] if self.other else []), UNSEEN]
            return [f"{self.name}={s}" for s in slots]
        return [self.name + c for c in CYCLIC]

    @property
    def width(self) -> int:
        return len(self.names())


BOOLEAN_TEXT = {"true": "true", "false": "false"}


def category_text(col: pd.Series) -> pd.Series:
    """A categorical column's values as the strings levels are stored as: stripped text, whole numbers without
    '.0', booleans (and true/false in any case) as 'true'/'false'; NaN and empty strings are missing."""
    def text(v: Any) -> Any:
        if isinstance(v, (bool, np.bool_)):
            return "true" if v else "false"
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        s = str(v).strip()
        return BOOLEAN_TEXT.get(s.lower(), s) if s else None

    return col.map(text, na_action="ignore").astype(object)


def _timestamps(col: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        return col.dt.tz_convert("UTC") if col.dt.tz is not None else col
    col = col.where(col.astype(str).str.strip() != "")  # an empty string is a missing time
    parsed = pd.to_datetime(col, errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna() & col.notna()
    if bad.any():
        raise ColumnError(f"column '{col.name}' has values that are not ISO 8601 date/times, e.g. "
                          f"{col[bad].iloc[0]!r}; expected e.g. 2024-05-01T13:45:00")
    return parsed


def numbers(col: pd.Series) -> np.ndarray:
    """A numeric column as float64 (NaN = missing); a `ColumnError` names a non-number or infinite value."""
    if pd.api.types.is_timedelta64_dtype(col):
        return col.dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_bool_dtype(col):
        col = col.astype(np.float64)
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_complex_dtype(col):
        coerced = pd.to_numeric(col, errors="coerce")
        bad = coerced.isna() & col.notna() & (col.astype(str).str.strip() != "")
        if bad.any():
            raise ColumnError(f"column '{col.name}' has non-numeric values, e.g. {col[bad].iloc[0]!r}; expected numbers")
        col = coerced
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        raise ColumnError(f"column '{col.name}' has infinite values; send numbers (or leave the cell empty)")
    return values


@dataclass(frozen=True)
class EncodedRows:
    """Rows in encoded raw units (n, encoded columns), with per-row counts of missing cells and unseen levels."""

    raw: np.ndarray  # float64
    missing: np.ndarray  # (n,) int: missing cells among the used columns
    unseen: np.ndarray  # (n,) int: categorical values never seen in training
    imputed: np.ndarray | None = None  # (n, encoded columns) bool: a numeric value filled in (it has no residual)


class TableColumns:
    """The used columns of a table, in order: encode raw rows, decode reconstructions, describe the layout."""

    def __init__(self, specs: list[ColumnSpec]):
        self.specs = specs
        self.inputs = [s.name for s in specs]
        self.names = [n for s in specs for n in s.names()]
        self.starts = np.cumsum([0] + [s.width for s in specs])[:-1].tolist()

    def to_dict(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.specs]

    @classmethod
    def from_dict(cls, data: list[dict[str, Any]]) -> TableColumns:
        return cls([ColumnSpec(**d) for d in data])

    @property
    def mixed(self) -> bool:
        """Whether anything but plain numeric columns is encoded (then the model needs the layout)."""
        return any(s.role != "numeric" or s.indicator for s in self.specs)

    def encode(self, df: pd.DataFrame) -> EncodedRows:
        """Raw rows (every input column present) → encoded raw units; `ColumnError` names a bad column."""
        n = len(df)
        out = np.zeros((n, len(self.names)), np.float64)
        missing, unseen = np.zeros(n, np.int64), np.zeros(n, np.int64)
        imputed = np.zeros(out.shape, bool)
        for spec, start in zip(self.specs, self.starts):
            col = df[spec.name]
            if spec.role == "numeric":
                values = numbers(col)
                gap = np.isnan(values)
                out[:, start] = np.where(gap, spec.fill, values)
                imputed[:, start] = gap
                if spec.indicator:
                    out[:, start + 1] = gap
            elif spec.role == "categorical":
                text = category_text(col)
                gap = text.isna().to_numpy()
                slots = {v: i for i, v in enumerate(spec.levels)} | {v: len(spec.levels) for v in spec.other}
                slot = np.array(text.map(slots).to_numpy(dtype=np.float64, na_value=np.nan))
                new = np.isnan(slot) & ~gap
                slot[new] = spec.width - 1
                rows = np.flatnonzero(~gap)
                out[rows, start + slot[rows].astype(np.int64)] = 1.0
                unseen += new
            else:
                stamps = _timestamps(col)
                gap = stamps.isna().to_numpy()
                hour = (stamps.dt.hour + stamps.dt.minute / 60 + stamps.dt.second / 3600).to_numpy(np.float64, na_value=0)
                day = stamps.dt.weekday.to_numpy(np.float64, na_value=0)
                parts = (np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24), np.sin(2 * np.pi * day / 7),
                         np.cos(2 * np.pi * day / 7))
                for i, part in enumerate(parts):
                    out[:, start + i] = np.where(gap, 0.0, part)
            missing += gap
        return EncodedRows(out, missing, unseen, imputed)

    def decode(self, raw: np.ndarray) -> pd.DataFrame:
        """Encoded raw units → one column per input: the value, the most likely level, or a time with the
        hour and weekday encoded (a cell marked missing comes back empty)."""
        out: dict[str, Any] = {}
        for spec, start in zip(self.specs, self.starts):
            block = raw[:, start : start + spec.width]
            if spec.role == "numeric":
                values = block[:, 0].astype(np.float64)
                if spec.indicator:
                    values = np.where(block[:, 1] > 0.5, np.nan, values)
                out[spec.name] = values
            elif spec.role == "categorical":
                slots = np.array([*spec.levels, *(spec.other[:1]), UNSEEN], dtype=object)
                level = slots[np.argmax(block, axis=1)]
                out[spec.name] = np.where(block.max(axis=1) > 0, level, None)
            else:  # a time in the week of Monday 2024-01-01 with this hour and weekday (UTC)
                hour = np.mod(np.arctan2(block[:, 0], block[:, 1]) * 24 / (2 * np.pi), 24)
                day = np.mod(np.round(np.arctan2(block[:, 2], block[:, 3]) * 7 / (2 * np.pi)), 7)
                stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(day * 86400 + np.round(hour * 3600), unit="s")
                text = pd.Series(stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), dtype=object)
                out[spec.name] = text.where(np.abs(block).sum(axis=1) > 1e-6, None).to_numpy()
        return pd.DataFrame(out)

    def layout(self) -> dict[str, Any]:
        """The model's view (aeops.models.layout): which encoded columns form one feature, and their kind."""
        groups = []
        for spec, start in zip(self.specs, self.starts):
            if spec.role == "numeric":
                groups.append({"name": spec.name, "kind": "numeric", "start": start, "stop": start + 1,
                               "mask": start + 1 if spec.indicator else None})
                if spec.indicator:  # an input only: the network knows the value was filled in, nothing scores it
                    groups.append({"name": spec.name + MISSING, "kind": "flag", "start": start + 1,
                                   "stop": start + 2, "mask": None})
            elif spec.role == "categorical":
                groups.append({"name": spec.name, "kind": "categorical", "start": start, "stop": start + spec.width,
                               "mask": None})
            else:  # the hour's and the weekday's (sine, cosine): one feature each
                groups += [{"name": f"{spec.name}:{part}", "kind": "cyclic", "start": start + 2 * i,
                            "stop": start + 2 * i + 2, "mask": None} for i, part in enumerate(("hour", "weekday"))]
        return {"width": len(self.names), "groups": groups}
