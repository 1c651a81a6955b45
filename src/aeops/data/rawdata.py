"""`RawData`: what a source loader returns and `prepare` splits and scales."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


class TableRows:
    """A table's used columns as read (mixed types, missing cells), indexed by rows like an array."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame.reset_index(drop=True)
        self.shape = (len(frame), frame.shape[1])

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, rows: Any) -> TableRows:
        rows = np.asarray(rows)
        return TableRows(self.frame.iloc[np.flatnonzero(rows) if rows.dtype == bool else rows])

    @staticmethod
    def concat(parts: list[TableRows]) -> TableRows:
        return TableRows(pd.concat([p.frame for p in parts], ignore_index=True))


@dataclass
class RawData:
    """Raw features (n, d) float64 (uint8 for IDX pixels; or a table's `TableRows`) with optional int64 labels and
    0/1 anomaly flags.

    `label_names` names the classes in ascending label order; `test` is a predefined test set
    (the t10k files of MNIST-like sources), else None.
    """

    x: Any
    labels: np.ndarray | None
    is_anomaly: np.ndarray | None
    feature_names: list[str]
    image_shape: tuple[int, int, int] | None
    label_names: list[Any] | None = None
    test: RawData | None = None
    dropped: dict[str, str] = field(default_factory=dict)  # column → why prepare left it out
    pixel_max: float | None = None  # images: the raw value of a white pixel (digits 16, 8-bit sources 255)
    roles: dict[str, Any] | None = None  # tables: column → aeops.data.roles.Role (used and left out)
    stream: Any = None  # a table larger than prepare.max_rows: aeops.data.streamed.StreamedTable (x holds its sample)
