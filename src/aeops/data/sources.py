"""Load raw data (sklearn digits, MNIST/Fashion-MNIST IDX files, CSV/Parquet tables, image folders) into `RawData`."""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeops.config import PrepareConfig
from aeops.data.rawdata import RawData, TableRows
from aeops.data.roles import Role, infer_roles, uninformative
from aeops.data.tables import TableSource
from aeops.errors import DataError
from aeops.scoring.columns import ColumnError, numbers

log = logging.getLogger(__name__)

IDX_IMAGES = 0x00000803
IDX_LABELS = 0x00000801
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_raw(cfg: PrepareConfig) -> RawData:
    """Load the raw data named by `cfg.source`."""
    if cfg.source == "digits":
        return load_digits()
    if cfg.source in ("mnist", "fashion_mnist"):
        return load_idx_dir(cfg.path)
    if cfg.source == "image_folder":
        from aeops.data.images import load_image_folder

        return load_image_folder(cfg)
    return load_table(cfg)


def _pixel_names(d: int) -> list[str]:
    return [f"px_{i}" for i in range(d)]


# ---------------------------------------------------------------- digits
def load_digits() -> RawData:
    """scikit-learn's bundled 8x8 digits: 1797 x 64, pixels 0..16, labels 0-9."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    return RawData(x, labels, None, _pixel_names(x.shape[1]), (1, 8, 8), list(range(10)), pixel_max=16.0)


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)
def _find_idx(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    expected = ", ".join(f"{a}[.gz], {b}[.gz]" for a, b in IDX_FILES.values())
    raise DataError(f"{folder}: IDX file '{name}[.gz]' not found (expected files: {expected})")


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a valid gzip file ({err})") from None


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Parse one IDX file of unsigned bytes; check its magic number and its size against the header."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: wrong IDX magic number 0x{found:08X} (expected 0x{magic:08X})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise DataError(
            f"{path}: truncated or corrupt IDX data: header says {dims} = {expected} bytes, "
            f"file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx_pair(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray, Path]:
    images_path = _find_idx(folder, images_name)
    labels_path = _find_idx(folder, labels_name)
    images = read_idx(images_path, IDX_IMAGES)
    labels = read_idx(labels_path, IDX_LABELS)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path}: {len(images)} images but {labels_path.name} has {len(labels)} labels"
        )
    return images, labels.astype(np.int64), images_path


def load_idx_dir(folder: str | Path) -> RawData:
    """MNIST-style folder: train + t10k images/labels (gzipped or not); t10k becomes `test`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder with MNIST-style IDX files not found")
    train_img, train_lab, train_path = _load_idx_pair(folder, *IDX_FILES["train"])
    test_img, test_lab, test_path = _load_idx_pair(folder, *IDX_FILES["test"])
    if train_img.shape[1:] != test_img.shape[1:]:
        raise DataError(
            f"{test_path}: images are {test_img.shape[1:]} but {train_path.name} has {train_img.shape[1:]}"
        )
    h, w = train_img.shape[1:]
    names = _pixel_names(h * w)
    classes = sorted(set(np.unique(train_lab).tolist()) | set(np.unique(test_lab).tolist()))
    shape = (1, h, w)
    # uint8 as stored: prepare splits and caps the rows first and converts only the rows it keeps (MNIST as
    # float64 is 376 MB, copied by every split)
    test = RawData(test_img.reshape(len(test_img), -1), test_lab, None, names, shape, classes, pixel_max=255.0)
    return RawData(train_img.reshape(len(train_img), -1), train_lab, None, names, shape, classes, test, pixel_max=255.0)


# ---------------------------------------------------------------- tables
def _require(path: Path, df: pd.DataFrame, column: str, role: str) -> None:
    if column not in df.columns:
        existing = ", ".join(map(repr, df.columns))
        raise DataError(f"{path}: {role} column '{column}' not found (columns: {existing})")


def _feature_names(cfg: PrepareConfig, df: pd.DataFrame, path: Path) -> list[str]:
    special = [c for c in (cfg.label_column, cfg.anomaly_column) if c is not None]
    if cfg.feature_columns is None:
        names = [c for c in df.columns if c not in special]
        if not names:
            raise DataError(f"{path}: no feature columns left besides {special}")
        return names
    # config-only checks (empty, duplicates, clashes) live in PrepareConfig's validator
    for c in cfg.feature_columns:
        _require(path, df, c, "feature")
    return list(cfg.feature_columns)


def _labels(path: Path, col: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Int codes and class names: integer labels keep their values, others map to 0..k-1."""
    missing = int(col.isna().sum())
    if missing:
        raise DataError(f"{path}: label column '{col.name}' has {missing} missing values")
    if pd.api.types.is_bool_dtype(col):
        col = col.astype(np.int64)
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_complex_dtype(col):
        values = col.to_numpy(dtype=np.float64)
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            codes = values.astype(np.int64)
            return codes, [int(v) for v in np.unique(codes)]
    names, codes = np.unique(col.astype(str).to_numpy(), return_inverse=True)
    return codes.astype(np.int64), [str(n) for n in names]


ANOMALY_WORDS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1, "no": 0, "yes": 1}


def _anomaly(path: Path, col: pd.Series) -> np.ndarray:
    """0/1 anomaly flags; booleans and yes/no/true/false (any case) are accepted too."""
    words = col.map(lambda v: ANOMALY_WORDS.get(str(v).strip().lower()), na_action="ignore")
    bad = words.isna()
    if bad.any():
        shown = sorted({repr(v) for v in col[bad].head(50).tolist()})[:5]
        raise DataError(
            f"{path}: anomaly column '{col.name}' must hold only 0/1 (or yes/no, true/false), found "
            f"{', '.join(shown)} in {int(bad.sum())} row(s)"
        )
    return words.to_numpy(dtype=np.int64)


LABEL_LIKE = {"is_anomaly", "anomaly", "label", "labels", "target", "class", "y", "outlier", "is_outlier"}


def load_table(cfg: PrepareConfig) -> RawData:
    """A CSV or Parquet file, or a folder of Parquet files: each column's role inferred (aeops.data.roles),
    optional label and 0/1 anomaly columns. A table of more than `prepare.max_rows` rows is not read whole:
    its train and val rows are a seeded sample of that many (`aeops.data.streamed`), its test rows are
    streamed by prepare.

    The used columns stay as read (`TableRows`: mixed types, missing cells); prepare fits their encoding
    on the training rows. Columns left out (identifiers, free text, raw timestamps, constant and
    duplicate ones, prepare.drop_columns) are named in one warning each, with the reason.
    """
    path = Path(cfg.path)
    source = TableSource(path)
    n = source.count_rows()
    if n == 0:
        raise DataError(f"{path}: no data rows")
    if cfg.max_rows is not None and n > cfg.max_rows:  # larger than prepare holds in memory: a seeded sample
        from aeops.data.streamed import sample_table

        _check_columns(cfg, source.columns, path)
        df, stream = sample_table(source, cfg, n)
        raw = table_raw(cfg, df, path, as_written=True)
        raw.stream = stream
        return raw
    df = source.read()
    if len(df) == 0:
        raise DataError(f"{path}: no data rows")
    return table_raw(cfg, df, path, as_written=source.fmt != "csv")


def _check_columns(cfg: PrepareConfig, columns: list[str], path: Path) -> None:
    """The columns params name exist in the table (checked before a large table is read)."""
    frame = pd.DataFrame(columns=columns)
    for column, role in ((cfg.label_column, "label"), (cfg.anomaly_column, "anomaly")):
        if column is not None:
            _require(path, frame, column, role)
    _feature_names(cfg, frame, path)
    for c in [*(cfg.categorical_columns or []), *(cfg.drop_columns or [])]:
        _require(path, frame, c, "categorical" if c in (cfg.categorical_columns or []) else "drop")


def table_raw(cfg: PrepareConfig, df: pd.DataFrame, path: Path, *, as_written: bool) -> RawData:
    """`RawData` of a table's rows: roles inferred, used columns kept as read. `as_written`: a CSV's
    categorical levels are already text as written (else they are read again so)."""
    for column, role in ((cfg.label_column, "label"), (cfg.anomaly_column, "anomaly")):
        if column is not None:
            _require(path, df, column, role)
    names = _feature_names(cfg, df, path)
    for c in [*(cfg.categorical_columns or []), *(cfg.drop_columns or [])]:
        _require(path, df, c, "categorical" if c in (cfg.categorical_columns or []) else "drop")
    try:
        roles = infer_roles(df, names, categorical=list(cfg.categorical_columns or []),
                            drop=list(cfg.drop_columns or []), datetime=cfg.datetime, max_levels=cfg.max_levels,
                            min_frequency=cfg.min_frequency)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    categorical = [n for n in names if roles[n].role == "categorical"]
    if categorical and not as_written:  # levels as written ('01', 'yes'), not as pandas parsed them
        df[categorical] = pd.read_csv(path, usecols=categorical, dtype=str, skipinitialspace=True)[categorical]
    numeric = [n for n in names if roles[n].role == "numeric"]
    if numeric:
        try:
            x = np.column_stack([numbers(df[n]) for n in numeric])
        except ColumnError as err:
            raise DataError(f"{path}: {err}") from None
        for name, why in uninformative(x, numeric).items():
            roles[name] = Role("constant" if why == "constant" else "duplicate", why)
    for name in names:
        if roles[name].role == "categorical" and df[name].notna().all() and df[name].nunique() == 1:
            roles[name] = Role("constant", "one level in every row")
    used = [n for n in names if roles[n].used]
    dropped = {n: roles[n].why if roles[n].role in ("constant", "duplicate") else f"{roles[n].role}: {roles[n].why}"
               for n in names if not roles[n].used}
    if not used:
        shown = ", ".join(f"'{n}' ({why})" for n, why in list(dropped.items())[:4])
        raise DataError(f"{path}: every feature column is left out ({shown}): nothing to learn; list categorical "
                        "columns in prepare.categorical_columns or set prepare.datetime: cyclic")
    for name, why in dropped.items():
        log.warning("%s: column '%s' left out (%s)", path, name, why)
    flags = [n for n in used if n.lower() in LABEL_LIKE]
    if flags:  # a label used as a feature makes detection trivially (and silently) wrong
        log.warning("%s: column(s) %s are used as features; if they are labels, set prepare.anomaly_column or "
                    "prepare.label_column (or prepare.feature_columns)", path, flags)
    labels, label_names = (None, None)
    if cfg.label_column is not None:
        labels, label_names = _labels(path, df[cfg.label_column])
    is_anomaly = _anomaly(path, df[cfg.anomaly_column]) if cfg.anomaly_column is not None else None
    return RawData(TableRows(df[used]), labels, is_anomaly, used, None, label_names, dropped=dropped, roles=roles)
