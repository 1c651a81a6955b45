"""`RawData`: what a source loader returns and `prepare` splits and scales."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RawData:
    """Raw features (n, d) float64 with optional int64 labels and 0/1 anomaly flags.

    `label_names` names the classes in ascending label order; `test` is a predefined test set
    (the t10k files of MNIST-like sources), else None.
    """

    x: np.ndarray
    labels: np.ndarray | None
    is_anomaly: np.ndarray | None
    feature_names: list[str]
    image_shape: tuple[int, int, int] | None
    label_names: list[Any] | None = None
    test: RawData | None = None
    dropped: dict[str, str] = field(default_factory=dict)  # feature column → why prepare dropped it
    pixel_max: float | None = None  # images: the raw value of a white pixel (digits 16, 8-bit sources 255)
