"""The `prepare` stage: load, split, apply the anomaly protocol, scale on train, write atomically."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeops.config import PrepareConfig
from aeops.data.encode import fit_columns
from aeops.data.images import ImageFiles
from aeops.data.prepared import ANOMALY_COLUMN, LABEL_COLUMN, MASKS_SUFFIX, VAL_ANOMALIES, PixelRows, Split
from aeops.data.rawdata import TableRows
from aeops.data.sources import RawData, _anomaly, _labels, load_raw
from aeops.errors import ConfigError, DataError
from aeops.io import atomic_path, write_json
from aeops.scoring.columns import ColumnError, TableColumns
from aeops.scoring.preprocess import apply_scaler

log = logging.getLogger(__name__)
MAX_VAL_ANOMALIES = 1000  # labelled anomalies kept outside test for detection-aware model selection
SCALINGS = ("standard", "robust", "minmax", "global_minmax", "none")
ROBUST_ROWS = 20_000  # rows of a pixel file the robust scaler's quantiles are taken on


def prepare(cfg: PrepareConfig) -> dict[str, Any]:
    """Run the stage; write splits, scaler.json, meta.json, profile.json to cfg.output_dir; return the profile.

    Image folders are decoded here, split by split, straight into uint8 `.npy` files in the output
    (one image in memory at a time); their scaler is then fitted by reading the train file in chunks.
    """
    raw = load_raw(cfg)
    splits = split(raw, cfg)
    protocol = _protocol_name(raw, cfg)
    splits = apply_protocol(splits, raw, cfg)
    splits = {name: _as_float(_subsample(part, cfg.max_train_rows if name == "train" else cfg.max_eval_rows, cfg.seed))
              for name, part in splits.items()}
    if VAL_ANOMALIES in splits and len(splits[VAL_ANOMALIES]) == 0:
        del splits[VAL_ANOMALIES]
    for name, part in splits.items():
        if len(part) == 0:
            raise DataError(f"prepare: split '{name}' is empty (source '{cfg.source}', path '{cfg.path}')")
    kind = resolve_scaling(cfg.scaling, raw)
    profile = _profile(cfg.source, splits) | {"dropped_columns": dict(raw.dropped)}
    if raw.roles is not None:
        profile["column_roles"] = {n: r.role for n, r in raw.roles.items()}
    with atomic_path(cfg.output_dir, replace_dir=True) as tmp:  # everything into a temporary directory, swapped in by one rename
        tmp.mkdir()
        if isinstance(raw.x, ImageFiles):
            for name, part in splits.items():
                part.x.decode_to(tmp / f"{name}.npy")
                part.x.decode_masks_to(tmp / f"{name}{MASKS_SUFFIX}")
            train_x: Any = PixelRows(tmp / "train.npy")
        else:
            train_x = splits["train"].x
        if isinstance(train_x, TableRows):
            table_rows = raw.x.frame
            scaler = fit_columns(train_x.frame, raw.roles or {}, kind=kind, min_frequency=cfg.min_frequency,
                                 fit_scaler=lambda k, x, names: fit_scaler(k, x, names, cfg.seed),
                                 gaps=raw.stream.gaps if raw.stream is not None else
                                 {c for c in table_rows.columns if table_rows[c].isna().any()})
        else:
            scaler = fit_scaler(kind, train_x, raw.feature_names, cfg.seed)
        _check_scaler(scaler, kind)
        scaler["ignored_features"] = list(raw.dropped)  # served models accept these columns and ignore them
        if isinstance(raw.x, ImageFiles):  # how an image of another size is brought to the model's (aeops score)
            scaler["image_fit"] = cfg.image_fit
        table = TableColumns.from_dict(scaler["columns"]) if "columns" in scaler else None
        names = list(scaler["feature_names"])
        for name, part in splits.items():
            values = _encoded(table, part.x, cfg.path) if table is not None else part.x
            stored = None if isinstance(part.x, ImageFiles) else apply_scaler(scaler, values)
            if stored is not None:
                _check_scaled(stored, values, names=names, split_name=name)
            _frame(part, stored, names).to_parquet(tmp / f"{name}.parquet", index=False)
        if raw.stream is not None:  # the sample is written: free it before the second pass over the table
            assert table is not None
            values = stored = train_x = table_rows = raw.x = None
            splits.clear()
            profile["test"] = write_test(raw, cfg, table=table, scaler=scaler, out=tmp / "test.parquet", protocol=protocol)
        write_json(tmp / "scaler.json", scaler)
        write_json(tmp / "meta.json", _meta(cfg, raw, kind=kind, scaler=scaler, has_anomaly=protocol is not None) | {
            "layout": table.layout() if table is not None and table.mixed else None,
            "roles": scaler.get("roles")})
        write_json(tmp / "profile.json", profile)
        write_json(tmp / "params.json", cfg.model_dump())
    return profile


# ---------------------------------------------------------------- splitting
def _part(raw: RawData, idx: np.ndarray) -> Split:
    return _select(Split(raw.x, raw.labels, raw.is_anomaly), idx)


def _strata(raw: RawData) -> np.ndarray | None:
    return raw.labels if raw.labels is not None else raw.is_anomaly


def _cut(idx: np.ndarray, strata: np.ndarray | None, size: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split `idx` into (rest, part) with `size` rows (fraction or count) in part, stratified if possible."""
    from sklearn.model_selection import train_test_split

    strat = None if strata is None else strata[idx]
    kwargs: dict[str, Any] = {"test_size": size, "random_state": seed, "shuffle": True}
    try:
        rest, part = train_test_split(idx, stratify=strat, **kwargs)
    except ValueError as err:
        if strat is None:
            raise DataError(f"prepare: cannot split {len(idx)} rows ({err})") from None
        log.warning("stratified split impossible (%s); splitting without stratification", err)
        try:
            rest, part = train_test_split(idx, **kwargs)
        except ValueError as err2:
            raise DataError(f"prepare: cannot split {len(idx)} rows ({err2})") from None
    return np.sort(rest), np.sort(part)


def _parts_nonempty(n: int, fractions: list[float]) -> bool:
    """Whether cutting `fractions` off `n` rows one after another (sklearn rounds a part up) leaves every part ≥ 1 row."""
    for f in fractions:
        part = int(np.ceil(f * n))
        if part < 1 or n - part < 1:
            return False
        n -= part
    return True


def min_rows(cfg: PrepareConfig, predefined_test: bool) -> int:
    """The fewest rows that give train, val (and test, unless the source has its own) one row each."""
    fractions = [cfg.val_fraction] if predefined_test else [
        cfg.test_fraction, cfg.val_fraction / (1.0 - cfg.test_fraction)]
    return next(n for n in range(2, 1 << 20) if _parts_nonempty(n, fractions))


def split(raw: RawData, cfg: PrepareConfig) -> dict[str, Split]:
    """train/val/test; a predefined test set (t10k) is kept, else test_fraction of all rows."""
    if raw.stream is not None:  # a sample of a larger table: train and val by each row's hash, test streamed later
        val = raw.stream.u < cfg.test_fraction + cfg.val_fraction
        return {"train": _part(raw, np.flatnonzero(~val)), "val": _part(raw, np.flatnonzero(val))}
    idx = np.arange(len(raw.x))
    need = min_rows(cfg, raw.test is not None)
    if len(idx) < need:
        parts = "train and val" if raw.test is not None else "train, val and test"
        fractions = f"val_fraction {cfg.val_fraction}" + ("" if raw.test is not None else f", test_fraction {cfg.test_fraction}")
        extra = (" The anomaly protocol also needs normal rows in train and val and both kinds in test, and a "
                 "stratified split 2 rows of each class.") if _protocol_name(raw, cfg) else ""
        raise DataError(f"prepare: {len(idx)} rows are too few: {parts} need ≥ 1 row each, so {fractions} need at "
                        f"least {need} rows.{extra}")
    strata = _strata(raw)
    if raw.test is not None:
        train, val = _cut(idx, strata, cfg.val_fraction, cfg.seed)
        test = Split(raw.test.x, raw.test.labels, raw.test.is_anomaly)
        return {"train": _part(raw, train), "val": _part(raw, val), "test": test}
    rest, test_idx = _cut(idx, strata, cfg.test_fraction, cfg.seed)
    val_share = cfg.val_fraction / (1.0 - cfg.test_fraction)
    train, val = _cut(rest, strata, val_share, cfg.seed)
    return {"train": _part(raw, train), "val": _part(raw, val), "test": _part(raw, test_idx)}


def _subsample(part: Split, n: int | None, seed: int) -> Split:
    """At most `n` rows of a split (stratified, seeded) for quick runs: max_train_rows, max_eval_rows."""
    if n is None or len(part) <= n:
        return part
    strata = part.labels if part.labels is not None else part.is_anomaly
    _, keep = _cut(np.arange(len(part)), strata, n, seed)
    return _select(part, keep)


def _cap(part: Split, n: int, seed: int) -> Split:
    """At most `n` rows of a split, a seeded random choice in the original order."""
    if len(part) <= n:
        return part
    return _select(part, np.sort(np.random.default_rng(seed).permutation(len(part))[:n]))


def _as_float(part: Split) -> Split:
    """A split's integer pixels (IDX files are read as uint8) as float64, like every other source's features."""
    if isinstance(part.x, np.ndarray) and part.x.dtype.kind in "iu":
        return replace(part, x=part.x.astype(np.float64))
    return part


def _select(part: Split, rows: np.ndarray) -> Split:
    """Rows of a split by index array or boolean mask (image files stay undecoded)."""
    return Split(*(None if a is None else a[rows] for a in (part.x, part.labels, part.is_anomaly)))


def _concat(arrays: tuple[Any, ...]) -> Any:
    if isinstance(arrays[0], (ImageFiles, TableRows)):
        return type(arrays[0]).concat(list(arrays))
    return np.concatenate(arrays)


def _encoded(table: TableColumns, rows: TableRows, path: str) -> np.ndarray:
    """A split's table rows in encoded raw units (what the scaler scales)."""
    try:
        return table.encode(rows.frame).raw
    except ColumnError as err:
        raise DataError(f"{path}: {err}") from None


def write_test(raw: RawData, cfg: PrepareConfig, *, table: TableColumns, scaler: dict[str, Any], out: Path,
               protocol: str | None) -> dict[str, Any]:
    """Pass two over a streamed table: its test rows encoded, scaled and written to `out` batch by batch
    (a Parquet row group each); returns the split's profile."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stream, names = raw.stream, list(scaler["feature_names"])
    normal = np.asarray(_normal_codes(raw, cfg), dtype=np.int64) if cfg.normal_classes is not None else None
    rows = n_anom = 0
    balance: dict[str, int] = {}
    writer: Any = None
    try:
        for batch in stream.test_batches():
            labels = _test_labels(raw, batch[cfg.label_column], path=cfg.path) if cfg.label_column is not None else None
            anomaly = _anomaly(Path(cfg.path), batch[cfg.anomaly_column]) if cfg.anomaly_column is not None else None
            if normal is not None and labels is not None:
                anomaly = (~np.isin(labels, normal)).astype(np.int64)
            values = _encoded(table, TableRows(batch[raw.feature_names]), cfg.path)
            stored = apply_scaler(scaler, values)
            _check_scaled(stored, values, names=names, split_name="test")
            part = pa.Table.from_pandas(_frame(Split(values, labels, anomaly), stored, names), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(out, part.schema)
            writer.write_table(part)
            rows += len(batch)
            if anomaly is not None:
                n_anom += int(anomaly.sum())
            if labels is not None:
                for v, c in zip(*np.unique(labels, return_counts=True)):
                    balance[str(int(v))] = balance.get(str(int(v)), 0) + int(c)
    finally:
        if writer is not None:
            writer.close()
    if rows == 0:
        raise DataError(f"prepare: split 'test' is empty (source '{cfg.source}', path '{cfg.path}')")
    if protocol is not None:
        _check_test(n_anom, rows, protocol)
    has_anomaly = protocol is not None or cfg.anomaly_column is not None
    return {"rows": rows, "features": len(raw.feature_names), "class_balance": dict(sorted(balance.items())) if balance else None,
            "anomaly_rate": n_anom / rows if has_anomaly else None, "streamed_from_rows": stream.rows}


def _test_labels(raw: RawData, col: pd.Series, *, path: str) -> np.ndarray:
    """A streamed batch's labels as the sampled rows' codes (integer labels are their own codes)."""
    names = raw.label_names or []
    if all(isinstance(n, int) for n in names):
        codes, _ = _labels(Path(path), col)
        return codes
    lookup = {str(n): i for i, n in enumerate(names)}
    text = col.astype(str)
    unseen = sorted(set(text) - set(lookup))
    if unseen or col.isna().any():
        what = f"class {unseen[0]!r}" if unseen else "missing labels"
        raise DataError(f"{path}: label column '{col.name}' has {what} in test rows but not in the sampled training "
                        f"rows; raise prepare.max_rows or fix the labels")
    return text.map(lookup).to_numpy(dtype=np.int64)


# ---------------------------------------------------------------- anomaly protocol
def _protocol_name(raw: RawData, cfg: PrepareConfig) -> str | None:
    if cfg.normal_classes is not None:
        return "normal_classes"
    return "anomaly_column" if raw.is_anomaly is not None else None


def _check_classes(raw: RawData, cfg: PrepareConfig) -> None:
    if raw.labels is None:
        raise ConfigError(
            "params.yaml: prepare.normal_classes needs labels: set prepare.label_column for a table "
            "(or use anomaly_column)"
        )
    codes = _codes(raw)
    shown = _class_list(codes, raw.label_names)
    normal = _normal_codes(raw, cfg)
    unknown = [c for c, code in zip(cfg.normal_classes or [], normal) if code not in codes]
    if unknown:
        raise ConfigError(f"params.yaml: prepare.normal_classes {unknown} not in the data (classes: {shown})")
    if set(codes) <= set(normal):
        raise ConfigError(
            f"params.yaml: prepare.normal_classes lists every class ({shown}); the anomaly protocol "
            "needs at least one class left out as anomalies"
        )


def _codes(raw: RawData) -> list[int]:
    parts = [raw.labels] + ([raw.test.labels] if raw.test is not None and raw.test.labels is not None else [])
    return [int(c) for c in np.unique(np.concatenate(parts))]


def _normal_codes(raw: RawData, cfg: PrepareConfig) -> list[int]:
    """normal_classes as label codes: an integer is a code, a string a class name (-1 if unknown)."""
    names = raw.label_names or []
    by_name = {str(n): c for c, n in zip(_codes(raw), names)} if len(names) == len(_codes(raw)) else {}
    return [c if isinstance(c, int) else by_name.get(c, int(c) if c.lstrip("-").isdigit() else -1)
            for c in cfg.normal_classes or []]


def _class_list(codes: list[int], names: list[Any] | None) -> str:
    if names is None or len(names) != len(codes) or [str(n) for n in names] == [str(c) for c in codes]:
        return ", ".join(map(str, codes))
    return ", ".join(f"{c} ({n!r})" for c, n in zip(codes, names))


def apply_protocol(splits: dict[str, Split], raw: RawData, cfg: PrepareConfig) -> dict[str, Split]:
    """normal_classes or anomaly_column: train/val keep normal rows only, test keeps all rows."""
    protocol = _protocol_name(raw, cfg)
    if protocol is None:
        return splits
    if protocol == "normal_classes":  # new Splits flagged by class: the caller's are left as they are
        _check_classes(raw, cfg)
        normal = np.asarray(_normal_codes(raw, cfg), dtype=np.int64)
        splits = {name: replace(part, is_anomaly=(~np.isin(part.labels, normal)).astype(np.int64))
                  for name, part in splits.items()}
    out = {name: _select(part, part.is_anomaly == 0) for name, part in splits.items() if name != "test"}
    held = [_select(part, part.is_anomaly == 1) for name, part in splits.items() if name != "test"]
    out[VAL_ANOMALIES] = _cap(Split(*(None if a[0] is None else _concat(a) for a in zip(*(
        (p.x, p.labels, p.is_anomaly) for p in held)))), MAX_VAL_ANOMALIES, cfg.seed)
    if "test" in splits:  # a streamed table's test rows are checked as they are written
        test = splits["test"]
        _check_test(int(test.is_anomaly.sum()), len(test), protocol)
        out["test"] = test
    return out


def _check_test(n_anom: int, rows: int, protocol: str) -> None:
    if n_anom == 0 or n_anom == rows:
        what = "no anomalies" if n_anom == 0 else "no normal rows"
        raise DataError(
            f"prepare: test split ({rows} rows) has {what} under protocol '{protocol}'; "
            "it needs both kinds (change the seed, test_fraction or classes)"
        )


# ---------------------------------------------------------------- scaling
def resolve_scaling(kind: str, raw: RawData) -> str:
    """'auto' → global_minmax for images, standard for tables."""
    if kind != "auto":
        return kind
    return "global_minmax" if raw.image_shape is not None else "standard"


def fit_scaler(kind: str, x: np.ndarray | PixelRows, feature_names: list[str], seed: int = 0) -> dict[str, Any]:
    """Fit on train features: {"kind", "feature_names", "offset", "scale", "train_min", "train_max"} (zero scales → 1).

    `x` is an array, or a pixel file read in chunks (`robust` then uses a seeded sample of ROBUST_ROWS rows).
    """
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    if kind not in SCALINGS:
        raise ConfigError(f"params.yaml: prepare.scaling = {kind!r} is not supported (allowed: {', '.join(SCALINGS)})")
    d = x.shape[1]
    sk: Any = StandardScaler() if kind == "standard" else MinMaxScaler() if kind == "minmax" else None
    lo, hi = np.full(d, np.inf), np.full(d, -np.inf)
    for chunk in ([x] if isinstance(x, np.ndarray) else x.raw_chunks()):  # a missing value (NaN) is skipped
        lo, hi = np.fmin(lo, np.fmin.reduce(chunk, axis=0)), np.fmax(hi, np.fmax.reduce(chunk, axis=0))
        if sk is not None:
            sk.partial_fit(chunk)  # what fit() does on one chunk
    if kind == "standard":
        offset, scale = sk.mean_, sk.scale_
    elif kind == "robust":  # median and interquartile range: a few huge values do not squash the rest
        sample = x if isinstance(x, np.ndarray) or len(x) <= ROBUST_ROWS else np.asarray(
            x[np.sort(np.random.default_rng(seed).choice(len(x), ROBUST_ROWS, replace=False))], np.float64)
        rk = RobustScaler().fit(sample)
        offset, scale = rk.center_, rk.scale_
    elif kind == "minmax":
        offset, scale = sk.data_min_, sk.data_range_
    elif kind == "global_minmax":
        offset, scale = np.full(d, np.nanmin(lo)), np.full(d, np.nanmax(hi) - np.nanmin(lo))
    else:  # none
        offset, scale = np.zeros(d), np.ones(d)
    scale = np.where(np.asarray(scale, dtype=np.float64) == 0, 1.0, scale)
    return {
        "kind": kind,
        "feature_names": list(feature_names),
        "offset": [float(v) for v in offset],
        "scale": [float(v) for v in scale],
        # raw training range per feature: serving warns when a batch mostly lies outside it
        "train_min": [float(v) for v in lo],
        "train_max": [float(v) for v in hi],
    }


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_scaler(scaler: dict[str, Any], kind: str) -> None:
    """A column whose values overflow the scaler's statistics (e.g. 1e200: its variance is inf) is one line."""
    bad = [j for j, (o, s) in enumerate(zip(scaler["offset"], scaler["scale"])) if not (np.isfinite(o) and np.isfinite(s))]
    if bad:
        j, name = bad[0], scaler["feature_names"][bad[0]]
        big = max(abs(scaler["train_min"][j]), abs(scaler["train_max"][j]))
        raise DataError(f"prepare: feature column '{name}' holds values too large to scale ({big:.3g}): its "
                        f"{kind} scaling overflows; fix or drop the column, or rescale it (e.g. log10)")


def _check_scaled(stored: np.ndarray, raw_x: np.ndarray, *, names: list[str], split_name: str) -> None:
    """Scaled values are stored as float32 (at most 3.4e38): a value beyond that after scaling is one line."""
    bad = ~np.isfinite(stored)
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(f"prepare: feature column '{names[col]}' = {float(raw_x[row, col]):.3g} (a {split_name} row) "
                        f"overflows float32 once scaled (more than {FLOAT32_MAX:.3g} training scales); fix or drop "
                        "the value, or rescale the column (e.g. log10)")


# ---------------------------------------------------------------- outputs
def _meta(cfg: PrepareConfig, raw: RawData, *, kind: str, scaler: dict[str, Any], has_anomaly: bool) -> dict[str, Any]:
    ends = apply_scaler(scaler, np.array([scaler["train_min"], scaler["train_max"]]))  # per feature: scaling keeps order
    lo, hi = float(ends.min()), float(ends.max())
    return {
        "source": cfg.source,
        "feature_names": list(scaler["feature_names"]),
        "image_shape": list(raw.image_shape) if raw.image_shape is not None else None,
        "n_features": len(scaler["feature_names"]),
        "has_labels": raw.labels is not None,
        "has_anomaly": has_anomaly,
        "label_names": list(raw.label_names) if raw.labels is not None and raw.label_names else None,
        "normal_classes": list(cfg.normal_classes) if cfg.normal_classes is not None else None,
        "scaling": kind,
        "value_range": [lo, hi],
        "unit_interval": bool(lo >= 0.0 and hi <= 1.0),
        "pixel_max": raw.pixel_max,
    }


def _split_profile(part: Split) -> dict[str, Any]:
    balance = None
    if part.labels is not None:
        values, counts = np.unique(part.labels, return_counts=True)
        balance = {str(int(v)): int(c) for v, c in zip(values, counts)}
    rate = float(part.is_anomaly.mean()) if part.is_anomaly is not None else None
    return {"rows": len(part), "features": int(part.x.shape[1]), "class_balance": balance, "anomaly_rate": rate}


def _profile(source: str, splits: dict[str, Split]) -> dict[str, Any]:
    return {"source": source, **{name: _split_profile(part) for name, part in splits.items()}}


def _frame(part: Split, x: np.ndarray | None, feature_names: list[str]) -> pd.DataFrame:
    """A split as a table: scaled features `x` (None: the pixels live in a .npy beside it) and label columns."""
    reserved = [c for c, arr in ((LABEL_COLUMN, part.labels), (ANOMALY_COLUMN, part.is_anomaly)) if arr is not None]
    clash = [c for c in reserved if c in feature_names]
    if clash:
        raise DataError(f"prepare: feature column(s) {clash} clash with output column names; rename or exclude them")
    if x is None:
        df = pd.DataFrame(index=pd.RangeIndex(len(part)))
    else:
        df = pd.DataFrame(x.astype(np.float32, copy=False), columns=feature_names, copy=False)
    if part.labels is not None:
        df[LABEL_COLUMN] = part.labels.astype(np.int64)
    if part.is_anomaly is not None:
        df[ANOMALY_COLUMN] = part.is_anomaly.astype(np.int8)
    return df
