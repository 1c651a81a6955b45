"""Tests of the data stage: sources, prepare (split, protocol, scaling, atomic outputs) and readers."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aeops.config import PrepareConfig
from aeops.data import prepare as prepare_mod
from aeops.data.prepare import prepare
from aeops.data.prepared import load_meta, load_scaler, load_split
from aeops.data.sources import IDX_IMAGES, IDX_LABELS, load_digits, load_idx_dir, load_raw
from aeops.errors import ConfigError, DataError
from aeops.scoring.preprocess import apply_scaler, invert_scaler

DATASETS = Path(__file__).parents[2] / "shared/datasets"
MNIST = DATASETS / "mnist"
BREASTW = DATASETS / "tabular/breastw.csv"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
FILES = ["train.parquet", "val.parquet", "test.parquet", "scaler.json", "meta.json", "profile.json", "params.json"]


def _cfg(tmp_path: Path, **kw) -> PrepareConfig:
    """No anomaly protocol unless the test sets one (the params default treats digit 9 as the anomaly)."""
    return PrepareConfig(output_dir=str(tmp_path / "prepared"), **({"normal_classes": None} | kw))


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits") / "prepared"
    prepare(PrepareConfig(output_dir=str(out), normal_classes=None))
    return out


# ---------------------------------------------------------------- digits
def test_digits_splits_and_files(digits_dir: Path) -> None:
    assert sorted(p.name for p in digits_dir.iterdir()) == sorted(FILES)
    splits = {n: load_split(digits_dir, n) for n in ("train", "val", "test")}
    assert sum(len(s) for s in splits.values()) == 1797
    assert abs(len(splits["test"]) - 0.2 * 1797) <= 1 and abs(len(splits["val"]) - 0.15 * 1797) <= 2
    full = np.bincount(load_digits().labels) / 1797
    for s in splits.values():
        assert s.x.dtype == np.float32 and s.x.shape[1] == 64 and s.is_anomaly is None
        assert np.abs(np.bincount(s.labels, minlength=10) / len(s) - full).max() < 0.02
    meta = load_meta(digits_dir)
    assert meta.scaling == "global_minmax" and meta.image_shape == [1, 8, 8]
    assert meta.unit_interval is True and meta.has_anomaly is False and meta.has_labels is True
    assert meta.value_range == [0.0, 1.0]
    assert splits["train"].x.min() >= 0 and splits["train"].x.max() <= 1


def test_digits_scaler_fitted_on_train_only(digits_dir: Path) -> None:
    scaler = load_scaler(digits_dir)
    train = load_split(digits_dir, "train")
    raw = invert_scaler(scaler, train.x)
    assert np.allclose(raw, np.round(raw), atol=1e-4)  # back to integer pixel values 0..16
    assert scaler["kind"] == "global_minmax" and len(scaler["offset"]) == 64
    assert scaler["offset"][0] == raw.min() and scaler["scale"][0] == pytest.approx(raw.max() - raw.min())
    assert np.allclose(apply_scaler(scaler, raw), train.x, atol=1e-6)
    # standard scaling: refit on the recovered raw train rows gives the stored statistics
    std = prepare(PrepareConfig(scaling="standard", output_dir=str(digits_dir.parent / "std"), normal_classes=None))
    s = load_scaler(digits_dir.parent / "std")
    std_train = load_split(digits_dir.parent / "std", "train")
    assert std["train"]["rows"] == len(train)
    assert np.allclose(np.asarray(s["offset"]), raw.mean(axis=0), atol=1e-4)
    assert np.allclose(std_train.x.mean(axis=0), 0, atol=1e-4)


def test_profile_matches_files(digits_dir: Path) -> None:
    profile = json.loads((digits_dir / "profile.json").read_text())
    assert profile["source"] == "digits"
    for name in ("train", "val", "test"):
        df = pd.read_parquet(digits_dir / f"{name}.parquet")
        p = profile[name]
        assert p["rows"] == len(df) and p["features"] == 64 and p["anomaly_rate"] is None
        assert p["class_balance"] == {str(k): int(v) for k, v in df["label"].value_counts().sort_index().items()}
        assert df["label"].dtype == np.int64 and df["px_0"].dtype == np.float32


def test_seed_determinism(tmp_path: Path, digits_dir: Path) -> None:
    prepare(PrepareConfig(output_dir=str(tmp_path / "a"), normal_classes=None))
    for f in FILES:
        if f != "params.json":  # holds output_dir, which differs here
            assert (tmp_path / "a" / f).read_bytes() == (digits_dir / f).read_bytes(), f
    prepare(PrepareConfig(seed=7, output_dir=str(tmp_path / "b"), normal_classes=None))
    assert (tmp_path / "b" / "test.parquet").read_bytes() != (digits_dir / "test.parquet").read_bytes()


def test_normal_classes_protocol(tmp_path: Path) -> None:
    profile = prepare(_cfg(tmp_path, normal_classes=[0, 1], max_train_rows=100))
    d = tmp_path / "prepared"
    train, val, test = (load_split(d, n) for n in ("train", "val", "test"))
    assert len(train) == 100 and profile["train"]["rows"] == 100
    for s in (train, val):
        assert set(np.unique(s.labels)) <= {0, 1} and not s.is_anomaly.any()
    assert set(np.unique(test.labels)) == set(range(10))
    assert np.array_equal(test.is_anomaly, (~np.isin(test.labels, [0, 1])).astype(np.int8))
    assert 0 < profile["test"]["anomaly_rate"] < 1 and load_meta(d).has_anomaly is True


@pytest.mark.parametrize("classes, match", [([11], "11"), (list(range(10)), "every class")])
def test_normal_classes_errors(tmp_path: Path, classes: list[int], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        prepare(_cfg(tmp_path, normal_classes=classes))


# ---------------------------------------------------------------- MNIST IDX
def test_mnist(tmp_path: Path) -> None:
    if not MNIST.is_dir():
        pytest.skip(f"MNIST IDX files expected in {MNIST} (see shared/datasets/README.md)")
    raw = load_raw(PrepareConfig(source="mnist", path=str(MNIST), normal_classes=None))
    assert raw.x.shape == (60000, 784) and raw.image_shape == (1, 28, 28)
    assert np.bincount(raw.labels).tolist() == MNIST_TRAIN_COUNTS
    assert raw.test is not None and raw.test.x.shape == (10000, 784)
    assert abs(raw.x.mean() / 255 - 0.1307) < 1e-3
    profile = prepare(_cfg(tmp_path, source="mnist", path=str(MNIST), max_train_rows=500, val_fraction=0.05))
    assert profile["train"]["rows"] == 500 and profile["val"]["rows"] == 3000
    assert profile["test"]["rows"] == 10000 and sum(profile["test"]["class_balance"].values()) == 10000
    meta = load_meta(tmp_path / "prepared")
    assert meta.image_shape == [1, 28, 28] and meta.unit_interval and meta.n_features == 784
    capped = prepare(_cfg(tmp_path, source="mnist", path=str(MNIST), normal_classes=[0], max_train_rows=500,
                          max_eval_rows=400))
    assert [capped[s]["rows"] for s in ("train", "val", "test")] == [500, 400, 400]
    assert capped["test"]["anomaly_rate"] == pytest.approx(0.902, abs=0.01)  # stratified: the anomaly share stays


def _idx(path: Path, magic: int, dims: tuple[int, ...], n_bytes: int | None = None) -> None:
    body = np.arange(int(np.prod(dims)), dtype=np.uint64).astype(np.uint8).tobytes()
    body = body if n_bytes is None else body[:n_bytes]
    data = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + body
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def _idx_dir(tmp_path: Path) -> Path:
    d = tmp_path / "idx"
    d.mkdir()
    _idx(d / "train-images-idx3-ubyte.gz", IDX_IMAGES, (6, 4, 4))
    _idx(d / "train-labels-idx1-ubyte", IDX_LABELS, (6,))
    _idx(d / "t10k-images-idx3-ubyte.gz", IDX_IMAGES, (3, 4, 4))
    _idx(d / "t10k-labels-idx1-ubyte.gz", IDX_LABELS, (3,))
    return d


def test_idx_tiny_ok(tmp_path: Path) -> None:
    raw = load_idx_dir(_idx_dir(tmp_path))
    assert raw.x.shape == (6, 16) and raw.test.x.shape == (3, 16) and raw.image_shape == (1, 4, 4)


@pytest.mark.parametrize(
    "name, magic, dims, n_bytes, match",
    [
        ("train-images-idx3-ubyte.gz", IDX_LABELS, (6, 4, 4), None, "magic"),
        ("train-labels-idx1-ubyte", IDX_LABELS, (6,), 4, "truncated"),
        ("t10k-labels-idx1-ubyte.gz", IDX_LABELS, (2,), None, "labels"),
        ("t10k-images-idx3-ubyte.gz", IDX_IMAGES, (3, 5, 5), None, "images are"),
    ],
)
def test_idx_errors(tmp_path: Path, name, magic, dims, n_bytes, match) -> None:
    d = _idx_dir(tmp_path)
    _idx(d / name, magic, dims, n_bytes)
    with pytest.raises(DataError, match=match) as err:
        load_idx_dir(d)
    msg = str(err.value)
    assert "\n" not in msg and name.split("-")[0] in msg and str(d) in msg


def test_idx_missing_file(tmp_path: Path) -> None:
    d = _idx_dir(tmp_path)
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte") as err:
        load_idx_dir(d)
    assert str(d) in str(err.value) and "train-images-idx3-ubyte" in str(err.value)


# ---------------------------------------------------------------- tables
def test_breastw_anomaly_column(tmp_path: Path) -> None:
    if not BREASTW.is_file():
        pytest.skip(f"tabular data expected at {BREASTW} (see shared/datasets/README.md)")
    profile = prepare(_cfg(tmp_path, source="table", path=str(BREASTW), anomaly_column="is_anomaly"))
    d = tmp_path / "prepared"
    train, val, test = (load_split(d, n) for n in ("train", "val", "test"))
    assert not train.is_anomaly.any() and not val.is_anomaly.any()
    assert 0 < test.is_anomaly.mean() < 1 and profile["test"]["anomaly_rate"] == pytest.approx(test.is_anomaly.mean())
    assert np.allclose(train.x.mean(axis=0), 0, atol=1e-5) and np.allclose(train.x.std(axis=0), 1, atol=1e-3)
    meta = load_meta(d)
    assert meta.scaling == "standard" and meta.feature_names == [f"f{i}" for i in range(9)]
    assert meta.image_shape is None and meta.has_anomaly and not meta.unit_interval
    assert train.labels is None and test.x.shape[1] == 9


def _table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})
    df["y"] = np.where(np.arange(n) % 2 == 0, "cat", "dog")
    df["anom"] = (np.arange(n) % 4 == 0).astype(int)
    return df


def test_table_labels_and_parquet(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    _table().to_parquet(path)
    profile = prepare(_cfg(tmp_path, source="table", path=str(path), label_column="y", normal_classes=[0]))
    meta = load_meta(tmp_path / "prepared")
    assert meta.label_names == ["cat", "dog"] and meta.feature_names == ["a", "b", "c", "anom"]
    assert profile["train"]["class_balance"] == {"0": profile["train"]["rows"]}
    assert profile["test"]["class_balance"].keys() == {"0", "1"}


def test_a_feature_named_like_a_label_is_kept_and_warned_about(tmp_path: Path, caplog) -> None:
    """No anomaly_column set: `is_anomaly` is a feature (as asked), read back as one, and prepare warns."""
    path = tmp_path / "t.csv"
    _table().drop(columns="y").rename(columns={"anom": "is_anomaly"}).to_csv(path, index=False)
    prepare(_cfg(tmp_path, source="table", path=str(path)))
    split = load_split(tmp_path / "prepared", "train")
    assert split.x.shape[1] == 4 and split.is_anomaly is None  # the feature is not mistaken for the flags
    assert "['is_anomaly'] are used as features" in caplog.text and "prepare.anomaly_column" in caplog.text


def test_constant_and_duplicate_columns_are_dropped_with_a_warning(tmp_path: Path, caplog) -> None:
    df = _table().drop(columns="anom").assign(k=3.0, c2=lambda d: d["c"], a_copy=lambda d: d["a"])
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    profile = prepare(_cfg(tmp_path, source="table", path=str(path), label_column="y"))
    out = tmp_path / "prepared"
    assert load_meta(out).feature_names == ["a", "b", "c"]
    assert list(load_split(out, "train").x.shape[1:]) == [3]
    assert profile["dropped_columns"] == {"k": "constant", "c2": "duplicate of c", "a_copy": "duplicate of a"}
    assert load_scaler(out)["ignored_features"] == ["k", "c2", "a_copy"]
    assert "column 'k' left out (constant)" in caplog.text and "column 'c2' left out (duplicate of c)" in caplog.text


def _bad_csv(df: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return path


def _set(df: pd.DataFrame, col: str, row: int, value) -> pd.DataFrame:
    df[col] = df[col].astype(object)
    df.loc[row, col] = value
    return df


TABLE_ERRORS = {
    "all_missing": (lambda: _table().assign(b=np.nan), {}, ["'b'", "entirely missing", "drop_columns"]),
    "inf": (lambda: _set(_table(), "c", 5, np.inf), {}, ["'c'", "infinite"]),
    "string": (lambda: _set(_table(), "a", 2, "oops"), {}, ["'a'", "oops"]),
    "no_label": (_table, {"label_column": "target"}, ["'target'", "'y'"]),
    "all_constant": (lambda: _table().assign(a=1.0, b=2.0, c=1.0, anom=0), {}, ["every feature column", "constant"]),
    "anomaly_2": (lambda: _set(_table(), "anom", 1, 2), {"anomaly_column": "anom"}, ["'anom'", "2"]),
}


@pytest.mark.parametrize("case", sorted(TABLE_ERRORS))
def test_table_errors(tmp_path: Path, case: str) -> None:
    make, kw, needles = TABLE_ERRORS[case]
    path = _bad_csv(make(), tmp_path)
    kw = {"label_column": "y", **kw} if "anomaly_column" not in kw else {**kw, "feature_columns": ["a", "b", "c"]}
    with pytest.raises(DataError) as err:
        prepare(_cfg(tmp_path, source="table", path=str(path), **kw))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    for needle in needles:
        assert needle in msg


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("dup.csv", "a,b,a\n1,2,3\n4,5,6\n", "duplicate.*'a'"),
        ("empty.csv", "", "empty"),
        ("header.csv", "a,b\n", "no data rows"),
        ("data.txt", "a,b\n1,2\n", "unsupported.*\\.csv"),
        ("missing.csv", None, "not found"),
    ],
)
def test_table_file_errors(tmp_path: Path, name: str, content: str | None, match: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        prepare(_cfg(tmp_path, source="table", path=str(path)))
    assert name in str(err.value)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="normal_classes needs labels"):
        path = _bad_csv(_table().drop(columns=["y"]), tmp_path)
        prepare(_cfg(tmp_path, source="table", path=str(path), normal_classes=[0]))
    from aeops.config import parse_section  # config-only checks: the validator, before any file is read

    for raw, message in (
        ({"label_column": "y"}, "label_column applies only to source 'table'"),
        ({"source": "table", "feature_columns": []}, "feature_columns is empty"),
        ({"source": "table", "feature_columns": ["a", "a"]}, "lists ['a'] more than once"),
        ({"source": "table", "feature_columns": ["a", "y"], "label_column": "y"}, "includes label/anomaly column"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_section("prepare", {"normal_classes": None, **raw})


def test_failed_prepare_leaves_output_untouched(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "prepared"
    prepare(_cfg(tmp_path, max_train_rows=50))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = _bad_csv(_set(_table(), "b", 3, np.inf), tmp_path)
    with pytest.raises(DataError):
        prepare(_cfg(tmp_path, source="table", path=str(bad)))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(prepare_mod, "write_json", boom)  # fails after the parquet files are written
    with pytest.raises(OSError, match="disk full"):
        prepare(_cfg(tmp_path, seed=1))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_load_split_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dvc repro prepare") as err:
        load_split(tmp_path, "train")
    assert "train.parquet" in str(err.value)


def test_search_trials_train_on_a_seeded_subsample_and_train_on_all_rows(digits_dir: Path) -> None:
    from aeops.training.datamodule import PreparedDataModule

    n = len(load_split(digits_dir, "train").x)
    sizes = []
    for cap, seed in ((None, 0), (100, 0), (100, 0), (100, 1), (10**6, 0)):
        dm = PreparedDataModule(str(digits_dir), max_train_rows=cap, seed=seed)
        dm.setup()
        sizes.append(dm.splits["train"].x)
    assert len(sizes[0]) == n and len(sizes[1]) == 100 and len(sizes[4]) == n
    assert np.array_equal(sizes[1], sizes[2]) and not np.array_equal(sizes[1], sizes[3])  # seeded


def test_labelled_anomalies_outside_test_are_kept_for_model_selection(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    profile = prepare(_cfg(tmp_path, normal_classes=list(range(9))))
    held, test = load_split(out, "val_anomalies"), load_split(out, "test")
    assert set(held.labels) == {9} and set(held.is_anomaly) == {1}
    assert profile["val_anomalies"]["rows"] == len(held) == 180 - int((test.labels == 9).sum())  # 180 nines in all
    rows = {r.tobytes() for r in test.x}
    assert not any(r.tobytes() in rows for r in held.x)  # disjoint from test
    assert all(set(load_split(out, s).is_anomaly) == {0} for s in ("train", "val"))
    prepare(_cfg(tmp_path))  # no anomaly protocol: no such split
    assert not (out / "val_anomalies.parquet").exists()


def test_an_epoch_on_a_small_table_cycles_it_in_shuffled_passes(digits_dir: Path) -> None:
    from aeops.training.datamodule import PreparedDataModule

    dm = PreparedDataModule(str(digits_dir), batch_size=64, max_train_rows=100, min_epoch_rows=1000)
    dm.setup()
    batches = list(dm.train_dataloader())
    rows = torch.cat(batches)
    assert len(batches) == 16 and len(rows) == 1000
    _, counts = torch.unique(rows, dim=0, return_counts=True)
    assert len(counts) == 100 and set(counts.tolist()) == {10}  # every row, ten times
    dm_big = PreparedDataModule(str(digits_dir), batch_size=64, min_epoch_rows=10)
    dm_big.setup()
    assert sum(len(b) for b in dm_big.train_dataloader()) == len(dm_big.splits["train"])  # large data: plain epochs
    dm_cap = PreparedDataModule(str(digits_dir), batch_size=64, max_epoch_rows=300)
    dm_cap.setup()
    first, second = (torch.cat(list(dm_cap.train_dataloader())) for _ in range(2))
    assert len(first) == len(second) == 300 and len(torch.unique(first, dim=0)) == len(torch.unique(second, dim=0))
    assert not torch.equal(first, second)  # capped epochs: a fresh random share each time


def test_robust_scaling_uses_median_and_iqr_so_one_huge_value_does_not_squash_the_rest() -> None:
    from aeops.data.prepare import fit_scaler

    x = np.r_[np.arange(99.0), [1e6]].reshape(-1, 1)
    robust, standard = fit_scaler("robust", x, ["a"]), fit_scaler("standard", x, ["a"])
    assert robust["offset"] == [pytest.approx(49.5)] and robust["scale"] == [pytest.approx(49.5)]
    assert standard["scale"][0] > 1e4  # the outlier sets the unit: typical rows all map to ~0
    assert np.ptp(apply_scaler(robust, x[:99])) > 1.5 > np.ptp(apply_scaler(standard, x[:99])) * 100
