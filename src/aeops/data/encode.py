"""Fit a table's encoding on the training rows: medians, missing flags, kept levels, the scaler.

The result is the scaler dict prepare writes (scaler.json): the usual offset/scale/range over the
encoded columns (numeric ones scaled by `prepare.scaling`, flags, one-hot and cyclic columns as they
are), plus "columns" (aeops.scoring.columns) and "roles". scikit-learn fits the parts it has:
`OneHotEncoder(min_frequency=…)` finds the kept and the rare levels, the scalers the statistics.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from aeops.data.roles import Role
from aeops.errors import DataError
from aeops.scoring.columns import ColumnSpec, TableColumns, category_text, numbers


def _levels(col: pd.Series, min_frequency: float) -> tuple[list[str], list[str]]:
    """(kept levels, rare levels) of a categorical training column, by scikit-learn's OneHotEncoder."""
    from sklearn.preprocessing import OneHotEncoder

    text = category_text(col).dropna()
    if len(text) == 0:
        return [], []
    enc = OneHotEncoder(min_frequency=min_frequency, handle_unknown="infrequent_if_exist")
    enc.fit(text.to_numpy(dtype=object).reshape(-1, 1))
    rare = [] if enc.infrequent_categories_[0] is None else [str(v) for v in enc.infrequent_categories_[0]]
    kept = [str(v) for v in enc.categories_[0] if str(v) not in set(rare)]
    return kept, rare


def fit_columns(train: pd.DataFrame, roles: dict[str, Role], *, kind: str, min_frequency: float,
                fit_scaler: Callable[[str, np.ndarray, list[str]], dict[str, Any]],
                gaps: set[str] | None = None) -> dict[str, Any]:
    """The scaler dict (with "columns" and "roles") for the used columns of `train`, in their order.
    `fit_scaler(kind, x, names)` fits the numeric columns' scaling on their raw values (missing cells ignored).
    `gaps`: columns with missing cells anywhere in the table: each gets a missing flag (so a gap in val or test
    is masked in evaluation as in serving), even where the training rows have none. Values come from `train` only."""
    specs: list[ColumnSpec] = []
    parsed: dict[str, np.ndarray] = {}  # each numeric training column as float64, missing cells NaN (parsed once)
    for name in train.columns:
        role = roles[name].role
        if role == "numeric":
            values = parsed[name] = numbers(train[name])
            gap = np.isnan(values)
            if not (~gap).any():
                raise DataError(f"prepare: column '{name}' has no values in the training split; leave it out with "
                                "prepare.drop_columns")
            specs.append(ColumnSpec(name, "numeric", fill=float(np.median(values[~gap])),
                                    indicator=bool(gap.any()) or name in (gaps or set())))
        elif role == "categorical":
            kept, rare = _levels(train[name], min_frequency)
            if not kept and not rare:
                raise DataError(f"prepare: column '{name}' has no values in the training split; leave it out with "
                                "prepare.drop_columns")
            specs.append(ColumnSpec(name, "categorical", levels=kept, other=rare))
        else:
            specs.append(ColumnSpec(name, "datetime"))
    table = TableColumns(specs)
    raw = table.encode(train).raw
    numeric = [start for spec, start in zip(specs, table.starts) if spec.role == "numeric"]
    names = [spec.name for spec in specs if spec.role == "numeric"]
    offset, scale = np.zeros(len(table.names)), np.ones(len(table.names))
    if numeric:
        values = np.column_stack([parsed[n] for n in names])  # missing cells as NaN: the scalers skip them
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing train column: its fill stands
            fitted = fit_scaler(kind, values, names)
        offset[numeric], scale[numeric] = fitted["offset"], fitted["scale"]
    bad = [names[j] for j, v in enumerate(offset[numeric]) if not np.isfinite(v)]
    if bad:
        raise DataError(f"prepare: column '{bad[0]}' has no values in the training split; leave it out with "
                        "prepare.drop_columns")
    return {
        "kind": kind,
        "feature_names": table.names,
        "offset": offset.tolist(),
        "scale": scale.tolist(),
        "train_min": np.min(raw, axis=0).tolist(),
        "train_max": np.max(raw, axis=0).tolist(),
        "columns": table.to_dict(),
        "roles": {n: {"role": r.role, "why": r.why} for n, r in roles.items()},
    }
