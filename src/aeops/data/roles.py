"""What each column of a table is: its role, inferred from its values and name, overridable in params.

Roles: `numeric`, `categorical` (strings, booleans, pandas categories; numbers only where
`prepare.categorical_columns` lists them), `datetime` (datetime dtype or ISO strings), and the
excluded ones, each with the reason: `identifier` (a value per row, or an id-like name with nearly
unique values, or a count of the rows in file order), `text` (strings with too many levels to
encode), `constant`, `duplicate`, `dropped` (`prepare.drop_columns`) and, by default, raw
`datetime`. Pure pandas: `load_table` calls it, prepare records the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aeops.errors import DataError

USED = ("numeric", "categorical", "datetime")
ID_NAME = re.compile(r"^(id|.*[_ .-]id|uuid|guid|key|index|rownames|row_?names?|unnamed: ?\d+)$", re.IGNORECASE)
CAMEL_ID = re.compile(r"[a-z](Id|ID)$")  # customerId, orderID
NEAR_UNIQUE = 0.95  # an id-like name with at least this share of distinct values is an identifier
MIN_ROWS_UNIQUE = 20  # strings distinct in every row count as identifiers from this many rows on
MOSTLY_NUMBERS = 0.9  # strings that are numbers in at least this share of the cells, but not all: a data error
TEXT_UNIQUE = 0.5  # strings with more distinct values than this share of the rows are free text
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


@dataclass(frozen=True)
class Role:
    """A column's role, and why it has it (shown in warnings, the profile and the report)."""

    role: str
    why: str

    @property
    def used(self) -> bool:
        return self.role in USED


def _id_like(name: str) -> bool:
    return bool(ID_NAME.match(name.strip()) or CAMEL_ID.search(name.strip()))


def _counts_rows(values: np.ndarray) -> bool:
    """0, 1, 2, … or 1, 2, 3, … in file order: a saved pandas index or R's row names."""
    return len(values) >= 3 and values[0] in (0.0, 1.0) and bool(np.all(np.diff(values) == 1.0))


def _iso_dates(col: pd.Series) -> bool:
    sample = col.dropna().astype(str).str.strip().head(200)
    return len(sample) > 0 and bool(sample.map(lambda v: bool(ISO_DATE.match(v))).all())


def level_count(col: pd.Series, min_frequency: float) -> int:
    """Levels a categorical column keeps: those with at least `min_frequency` of the non-missing rows
    (the rest share one level)."""
    shares = col.dropna().astype(str).value_counts(normalize=True)
    kept = int((shares >= min_frequency).sum())
    return kept + int(kept < len(shares))


def infer_role(col: pd.Series, *, categorical: bool, max_levels: int, min_frequency: float) -> Role:
    """The role of one column (not the label or anomaly column), from its dtype, values and name."""
    name = str(col.name)
    present = col.dropna()
    if len(present) == 0:
        raise DataError(f"column '{name}' is entirely missing: nothing to learn from it; leave it out with "
                        "prepare.drop_columns")
    distinct = present.nunique()
    if categorical:
        levels = level_count(col, min_frequency)
        if levels > max_levels:
            raise DataError(f"categorical column '{name}' has {levels} levels after grouping rare ones (more than "
                            f"prepare.max_levels = {max_levels}); raise prepare.max_levels or prepare.min_frequency, "
                            "or leave it out with prepare.drop_columns")
        return Role("categorical", "listed in prepare.categorical_columns")
    if pd.api.types.is_datetime64_any_dtype(col):
        return Role("datetime", f"{col.dtype} values")
    if pd.api.types.is_timedelta64_dtype(col):
        return Role("numeric", "durations (in seconds)")
    if pd.api.types.is_bool_dtype(col) or isinstance(col.dtype, pd.CategoricalDtype):
        return Role("categorical", f"{col.dtype} values")
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_complex_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        seen = values[np.isfinite(values)]
        whole = len(seen) == int((~np.isnan(values)).sum()) and bool(np.all(seen % 1 == 0))
        if whole and not np.isnan(values).any() and _counts_rows(values):
            return Role("identifier", "counts the rows in file order (a saved row index)")
        if whole and _id_like(name) and distinct >= NEAR_UNIQUE * len(present):
            return Role("identifier", "an id-like name with a distinct value in nearly every row")
        return Role("numeric", "numbers")
    if pd.api.types.is_complex_dtype(col):
        raise DataError(f"column '{name}' holds complex numbers; split it into real columns or leave it out "
                        "with prepare.drop_columns")
    strings = present.astype(str).str.strip()
    numbers = pd.to_numeric(strings, errors="coerce")
    if numbers.notna().mean() >= MOSTLY_NUMBERS and not numbers.notna().all():
        row = int(np.flatnonzero(col.notna().to_numpy())[int(np.flatnonzero(numbers.isna().to_numpy())[0])])
        raise DataError(f"column '{name}' holds numbers but also non-numeric values, e.g. {col.iloc[row]!r} at data "
                        f"row {row + 1}; fix the values (an empty cell counts as missing), or list the column in "
                        "prepare.categorical_columns or prepare.drop_columns")
    if numbers.notna().all():  # numbers stored as text
        return infer_role(pd.to_numeric(col, errors="coerce").rename(name), categorical=False, max_levels=max_levels,
                          min_frequency=min_frequency)
    if _iso_dates(col):
        return Role("datetime", "ISO 8601 date/time strings")
    words = strings.str.contains(r"\s").mean() > 0.5  # most values hold spaces: sentences, not codes
    if distinct == len(present) and len(present) >= MIN_ROWS_UNIQUE and not words:
        return Role("identifier", "a distinct value in every row")
    if _id_like(name) and distinct >= NEAR_UNIQUE * len(present):
        return Role("identifier", "an id-like name with a distinct value in nearly every row")
    levels = level_count(col, min_frequency)
    if distinct > TEXT_UNIQUE * len(present) or levels > max_levels:
        return Role("text", f"{distinct} distinct strings ({levels} levels after grouping rare ones; at most "
                            f"prepare.max_levels = {max_levels} are encoded): free text, not a category")
    return Role("categorical", f"{distinct} distinct strings")


def infer_roles(df: pd.DataFrame, candidates: list[str], *, categorical: list[str], drop: list[str],
                datetime: str, max_levels: int, min_frequency: float) -> dict[str, Role]:
    """Every candidate column's role; a datetime column is used only with `datetime = "cyclic"`."""
    roles: dict[str, Role] = {}
    for name in candidates:
        if name in drop:
            roles[name] = Role("dropped", "listed in prepare.drop_columns")
            continue
        role = infer_role(df[name], categorical=name in categorical, max_levels=max_levels,
                          min_frequency=min_frequency)
        if role.role == "datetime" and datetime == "exclude":
            role = Role("excluded datetime", f"{role.why}; prepare.datetime = cyclic encodes hour and weekday")
        roles[name] = role
    return roles


def uninformative(x: np.ndarray, names: list[str]) -> dict[str, str]:
    """Numeric columns that carry no information: constant ones (missing cells aside, and none missing),
    and exact copies of an earlier column (missing cells included)."""
    dropped: dict[str, str] = {}
    for j, name in enumerate(names):
        col = x[:, j]
        seen = col[~np.isnan(col)]
        if len(seen) and np.ptp(seen) == 0 and len(seen) == len(col):
            dropped[name] = "constant"
    keys: dict[bytes, str] = {}
    for j, name in enumerate(names):
        if name in dropped:
            continue
        key = np.ascontiguousarray(x[:, j]).tobytes()
        if key in keys:
            dropped[name] = f"duplicate of {keys[key]}"
        else:
            keys[key] = name
    return dropped
