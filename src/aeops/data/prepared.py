"""Read the outputs of the `prepare` stage: splits, meta.json and scaler.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aeops.errors import DataError

SPLITS = ("train", "val", "test")
# Labelled anomalies outside test (those the protocol removed from train/val), written only under an
# anomaly protocol: tune can select models for detection on them, test stays untouched.
VAL_ANOMALIES = "val_anomalies"
LABEL_COLUMN = "label"
ANOMALY_COLUMN = "is_anomaly"
HINT = "run `dvc repro prepare` first"


@dataclass
class Split:
    """One split: features (n, d) float32, optional int64 labels and int8 0/1 anomaly flags."""

    x: np.ndarray
    labels: np.ndarray | None
    is_anomaly: np.ndarray | None

    def __len__(self) -> int:
        return len(self.x)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: not found; {HINT}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err}); {HINT}") from None


def load_meta(data_dir: str | Path) -> dict[str, Any]:
    """meta.json: source, feature_names, image_shape, has_labels, has_anomaly, scaling, value_range ..."""
    return _read_json(Path(data_dir) / "meta.json")


def load_scaler(data_dir: str | Path) -> dict[str, Any]:
    """scaler.json: {"kind", "feature_names", "offset", "scale"}; x_scaled = (x - offset) / scale."""
    return _read_json(Path(data_dir) / "scaler.json")


def has_split(data_dir: str | Path, name: str) -> bool:
    return (Path(data_dir) / f"{name}.parquet").is_file()


def load_split(data_dir: str | Path, name: Literal["train", "val", "test", "val_anomalies"]) -> Split:
    """Read `<data_dir>/<name>.parquet` as a `Split` (features in meta.json order)."""
    import pyarrow.parquet as pq

    if name not in (*SPLITS, VAL_ANOMALIES):
        raise ValueError(f"split must be one of {(*SPLITS, VAL_ANOMALIES)}, got {name!r}")
    data_dir = Path(data_dir)
    path = data_dir / f"{name}.parquet"
    if not path.is_file():
        raise DataError(f"{path}: not found; {HINT}")
    meta = load_meta(data_dir)
    features = list(meta["feature_names"])
    present = set(pq.read_schema(path).names)
    missing = [c for c in features if c not in present]
    if missing:
        raise DataError(f"{path}: feature columns {missing[:5]} from meta.json are missing; {HINT}")
    extra = [c for c in (LABEL_COLUMN, ANOMALY_COLUMN) if c in present and c not in features]  # a feature named so stays one
    table = pq.read_table(path, columns=features + extra)
    x = np.column_stack([table.column(c).to_numpy() for c in features]).astype(np.float32, copy=False)
    labels = table.column(LABEL_COLUMN).to_numpy().astype(np.int64) if LABEL_COLUMN in extra else None
    anomaly = table.column(ANOMALY_COLUMN).to_numpy().astype(np.int8) if ANOMALY_COLUMN in extra else None
    return Split(np.ascontiguousarray(x), labels, anomaly)


def _arrays(scaler: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    offset = np.asarray(scaler["offset"], dtype=np.float64)
    scale = np.asarray(scaler["scale"], dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(offset):
        raise DataError(f"scaler expects (n, {len(offset)}) features, got shape {x.shape}")
    return offset, scale


def apply_scaler(scaler: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Scale raw features: (x - offset) / scale, as float32."""
    offset, scale = _arrays(scaler, x)
    return ((np.asarray(x, dtype=np.float64) - offset) / scale).astype(np.float32)


def invert_scaler(scaler: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Back to raw units: x * scale + offset, as float32 (e.g. for reconstructions)."""
    offset, scale = _arrays(scaler, x)
    return (np.asarray(x, dtype=np.float64) * scale + offset).astype(np.float32)
