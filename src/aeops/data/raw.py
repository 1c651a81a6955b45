"""Prepared splits back in raw units: what a user sends the model (samples, signatures, promotion)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from aeops.data.prepared import load_scaler, load_split, sample_split
from aeops.errors import DataError
from aeops.io import atomic_path
from aeops.scoring.preprocess import Preprocessor


def raw_split(data_dir: str, name: str = "test", head: int | None = None) -> tuple[pd.DataFrame, Any]:
    """A prepared split back in raw units, as the columns a user sends (and its labels).

    `head`: only the first rows (read alone from a pixel file). Otherwise at most MAX_EVAL_VALUES values:
    a larger split gives a seeded sample of its rows, as evaluate sees it.
    """
    if head is None:
        split = sample_split(data_dir, name)[0]
    else:
        split = load_split(data_dir, name, lazy=True).take(slice(head))  # type: ignore[arg-type]
    df = Preprocessor(load_scaler(data_dir)).frame(split.x)  # a table's raw columns: levels, empty cells, times
    return df, split


def write_sample(data_dir: str, output: str, split: str = "test", rows: int = 500) -> int:
    """Write the first `rows` rows of a prepared split in raw units (the model's input), atomically.

    `.csv`/`.parquet`: a table for `aeops score`; `.json`: a REST request body (`dataframe_split`).
    """
    if rows < 1:
        raise DataError(f"--rows must be at least 1, got {rows}")
    df = raw_split(data_dir, split, head=rows)[0]
    suffix = Path(output).suffix.lower()
    with atomic_path(output) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix in (".parquet", ".pq"):
            df.to_parquet(tmp, index=False)
        elif suffix == ".json":
            tmp.write_text(json.dumps({"dataframe_split": df.to_dict(orient="split", index=False)}))
        else:
            raise DataError(f"{output}: name the file *.csv, *.parquet or *.json (a REST request body)")
    return len(df)
