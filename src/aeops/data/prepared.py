"""Read the outputs of the `prepare` stage: splits, meta.json and scaler.json.

A split is `<name>.parquet` (features, label, is_anomaly), or, for image folders, `<name>.npy`
(uint8 pixels, n × channels × height × width, raw units) beside a `<name>.parquet` holding only
the label columns. Pixel files are read through a memory map (`PixelRows`): rows are scaled when
they are fetched, so a split larger than RAM never has to be held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aeops.errors import DataError
from aeops.scoring.preprocess import scaler_arrays

SPLITS = ("train", "val", "test")
# Labelled anomalies outside test (those the protocol removed from train/val), written only under an
# anomaly protocol: tune can select models for detection on them, test stays untouched.
VAL_ANOMALIES = "val_anomalies"
MASKS_SUFFIX = "_masks.npy"  # an image split's defect masks: <split>_masks.npy beside <split>.npy
LABEL_COLUMN = "label"
ANOMALY_COLUMN = "is_anomaly"
HINT = "run `dvc repro prepare` first"
CHUNK_BYTES = 1 << 24  # float64 bytes per chunk when a pixel file is read through (16 MB)
# Evaluation (model, baselines, plots, promotion scores) holds whole splits in memory, with several float
# copies each; above this many values (64 MB as float32) a split is replaced by a seeded random sample of
# rows, and evaluate says so. MNIST-sized images keep 21,000 rows a split, 64×64 RGB 1,365.
MAX_EVAL_VALUES = 1 << 24


@dataclass
class Split:
    """One split: features (n, d) float32, optional int64 labels and int8 0/1 anomaly flags; an image split with
    masks (prepare.mask_dir) also has (n, h, w) uint8 0/1 defect masks."""

    x: np.ndarray
    labels: np.ndarray | None
    is_anomaly: np.ndarray | None
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def take(self, rows: Any) -> Split:
        """These rows (a slice, an index array or a mask) as in-memory arrays (a pixel file reads only them)."""
        return Split(*(None if a is None else np.asarray(a[rows])
                       for a in (self.x, self.labels, self.is_anomaly, self.masks)))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: not found; {HINT}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err}); {HINT}") from None


@dataclass(frozen=True)
class Meta:
    """meta.json, typed: what prepare made of the source."""

    source: str
    feature_names: list[str]
    image_shape: list[int] | None  # (channels, height, width) for images
    n_features: int
    has_labels: bool
    has_anomaly: bool
    scaling: str
    value_range: list[float]  # [min, max] of the scaled training values
    unit_interval: bool  # scaled training values lie in [0, 1]
    label_names: list[Any] | None = None
    normal_classes: list[Any] | None = None
    pixel_max: float | None = None  # images: the raw value of a white pixel (None: prepared by an older aeops)
    layout: dict[str, Any] | None = None  # a mixed-type table's feature groups (aeops.models.layout); None: one per column
    roles: dict[str, Any] | None = None  # tables: column → {"role", "why"} (aeops.data.roles)

    @property
    def feature_count(self) -> int:
        """Features as the model sees them: a categorical column (k one-hot inputs) counts once."""
        if not self.layout:
            return self.n_features
        return sum(g["kind"] != "flag" for g in self.layout["groups"])  # missing flags are inputs, not features

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: Path) -> Meta:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError as err:
            raise DataError(f"{path}: {str(err).split('__init__() ')[-1]}; {HINT}") from None


def load_meta(data_dir: str | Path) -> Meta:
    """meta.json: source, feature names, image shape, labels, scaling, value range …"""
    path = Path(data_dir) / "meta.json"
    return Meta.from_dict(_read_json(path), path=path)


class PreparedData:
    """The prepare stage's folder, read once: meta.json, scaler.json and the content hash (each on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @cached_property
    def meta(self) -> Meta:
        return load_meta(self.path)

    @cached_property
    def scaler(self) -> dict[str, Any]:
        return load_scaler(self.path)

    @cached_property
    def hash(self) -> str:
        from aeops.io import hash_dir

        return hash_dir(self.path)


def load_scaler(data_dir: str | Path) -> dict[str, Any]:
    """scaler.json: {"kind", "feature_names", "offset", "scale"}; x_scaled = (x - offset) / scale."""
    return _read_json(Path(data_dir) / "scaler.json")


class PixelRows:
    """The rows of a uint8 pixel file (n, c, h, w), flattened and scaled when fetched: float32 (rows, c·h·w).

    Indexing (an int, a slice, an index array or a boolean mask) reads only those rows from the memory
    map; `np.asarray` reads them all. Pickles without its memory map (DataLoader workers, DDP spawn).
    """

    def __init__(self, path: str | Path, scaler: dict[str, Any] | None = None):
        self.path = Path(path)
        self.scaler = scaler
        self._pixels: np.ndarray | None = None
        n, *image = self.pixels.shape
        self.shape = (n, int(np.prod(image)))
        self.image_shape = tuple(image)
        self.ndim, self.dtype = 2, np.dtype(np.float32)
        if scaler is not None:
            self._offset, self._scale = scaler_arrays(scaler, np.empty((0, self.shape[1])))

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            try:
                self._pixels = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as err:
                raise DataError(f"{self.path}: not a readable pixel file ({err}); {HINT}") from None
            if self._pixels.dtype != np.uint8 or self._pixels.ndim != 4:
                raise DataError(f"{self.path}: expected uint8 pixels (n, channels, height, width), found "
                                f"{self._pixels.dtype} {self._pixels.shape}; {HINT}")
        return self._pixels

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pixels": None}

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self[np.asarray([rows])][0]
        rows = rows if isinstance(rows, slice) else np.asarray(rows)
        x = np.asarray(self.pixels[rows]).reshape(-1, self.shape[1]).astype(np.float64)
        if self.scaler is not None:  # apply_scaler's arithmetic, in place: one float64 copy of the batch
            x -= self._offset
            x /= self._scale
        return x.astype(np.float32)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def raw_chunks(self) -> Iterator[np.ndarray]:
        """All rows in raw units (float64), CHUNK_BYTES at a time."""
        step = max(1, CHUNK_BYTES // (8 * self.shape[1]))
        for i in range(0, len(self), step):
            yield np.asarray(self.pixels[i : i + step], dtype=np.float64).reshape(-1, self.shape[1])


def has_split(data_dir: str | Path, name: str) -> bool:
    return (Path(data_dir) / f"{name}.parquet").is_file()


def load_split(data_dir: str | Path, name: Literal["train", "val", "test", "val_anomalies"],
               lazy: bool = False) -> Split:
    """Read a split as a `Split` (features in meta.json order, scaled).

    lazy=True: a pixel split's `x` stays a `PixelRows` on disk (tables are read into memory either way).
    """
    import pyarrow.parquet as pq

    if name not in (*SPLITS, VAL_ANOMALIES):
        raise ValueError(f"split must be one of {(*SPLITS, VAL_ANOMALIES)}, got {name!r}")
    data_dir = Path(data_dir)
    path = data_dir / f"{name}.parquet"
    if not path.is_file():
        raise DataError(f"{path}: not found; {HINT}")
    meta = load_meta(data_dir)
    features = list(meta.feature_names)
    present = set(pq.read_schema(path).names)
    pixel_file = data_dir / f"{name}.npy"
    if pixel_file.is_file():
        rows = PixelRows(pixel_file, load_scaler(data_dir))
        if list(rows.image_shape) != list(meta.image_shape or []):
            raise DataError(f"{pixel_file}: images of shape {list(rows.image_shape)}, meta.json says "
                            f"{meta.image_shape}; {HINT}")
        x: Any = rows if lazy else np.asarray(rows)
        features = []
    else:
        missing = [c for c in features if c not in present]
        if missing:
            raise DataError(f"{path}: feature columns {missing[:5]} from meta.json are missing; {HINT}")
    extra = [c for c in (LABEL_COLUMN, ANOMALY_COLUMN) if c in present and c not in features]  # a feature named so stays one
    table = pq.read_table(path, columns=features + extra)
    if features:
        x = np.column_stack([table.column(c).to_numpy() for c in features]).astype(np.float32, copy=False)
        x = np.ascontiguousarray(x)
    elif table.num_rows != len(x):
        raise DataError(f"{path}: {table.num_rows} label rows for {len(x)} images in {pixel_file.name}; {HINT}")
    labels = table.column(LABEL_COLUMN).to_numpy().astype(np.int64) if LABEL_COLUMN in extra else None
    anomaly = table.column(ANOMALY_COLUMN).to_numpy().astype(np.int8) if ANOMALY_COLUMN in extra else None
    masks = None
    mask_file = data_dir / f"{name}{MASKS_SUFFIX}"
    if mask_file.is_file():
        masks = np.load(mask_file, mmap_mode="r")
        if masks.shape != (len(x), *(meta.image_shape or [])[1:]):
            raise DataError(f"{mask_file}: masks of shape {list(masks.shape)} for {len(x)} images of shape "
                            f"{meta.image_shape}; {HINT}")
        if not lazy:
            masks = np.asarray(masks)
    return Split(x, labels, anomaly, masks)


def eval_rows(width: int, max_rows: int | None = None) -> int:
    """Rows of this many values a split may hold in memory for evaluation: MAX_EVAL_VALUES worth, or
    `max_rows` where fewer (`evaluate.max_rows`: the same sampling, at a small size)."""
    return max(1, min(MAX_EVAL_VALUES // max(width, 1), max_rows or MAX_EVAL_VALUES))


def sample_split(data_dir: str | Path, name: Literal["train", "val", "test", "val_anomalies"],
                 seed: int = 0, *, max_rows: int | None = None) -> tuple[Split, int]:
    """(a split in memory, its full row count): a seeded random sample of rows, in their order, where
    the whole split would exceed MAX_EVAL_VALUES values (or `max_rows` rows); the whole split otherwise."""
    split = load_split(data_dir, name, lazy=True)
    n, d = split.x.shape
    keep = eval_rows(d, max_rows)
    if n <= keep:
        return Split(np.asarray(split.x), split.labels, split.is_anomaly,
                     None if split.masks is None else np.asarray(split.masks)), n
    rows = np.sort(np.random.default_rng(seed).choice(n, size=keep, replace=False))
    return split.take(rows), n
