"""Tables larger than memory: a Parquet folder as `prepare.path`, and the streamed prepare above `prepare.max_rows`.

The memory itself is measured by benchmarks/table_memory.py; here: that the streamed path reads every row once
per pass, gives the same prepared data from a CSV, a Parquet file and a folder and whatever the batch size,
writes the test rows as the source rows encoded, and refuses a folder whose files disagree in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from aeops.config import PrepareConfig
from aeops.data import tables
from aeops.data.prepare import prepare
from aeops.data.prepared import load_split
from aeops.data.tables import TableSource, row_uniform
from aeops.errors import DataError

ROWS = 5000


def _table(n: int = ROWS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n),
                       "cat": rng.choice(["x", "y", "z"], size=n), "is_anomaly": (rng.random(n) < 0.05).astype(int)})
    df.loc[df.is_anomaly == 1, "a"] += 5
    df.loc[rng.random(n) < 0.1, "b"] = np.nan
    return df


def _folder(df: pd.DataFrame, root: Path, parts: int = 3) -> Path:
    root.mkdir(parents=True)
    step = -(-len(df) // parts)
    for i in range(parts):
        df.iloc[i * step:(i + 1) * step].to_parquet(root / f"part-{i:05d}.parquet", index=False)
    return root


def _prepare(path: Path, out: Path, **kw) -> dict:
    return prepare(PrepareConfig(source="table", path=str(path), anomaly_column="is_anomaly", normal_classes=None,
                                 output_dir=str(out), **({"max_rows": 1500} | kw)))


def _splits(out: Path) -> dict[str, np.ndarray]:
    return {s: load_split(out, s).x for s in ("train", "val", "test", "val_anomalies")}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tables")
    df = _table()
    df.to_csv(root / "t.csv", index=False)
    df.to_parquet(root / "t.parquet", index=False)
    return {"csv": root / "t.csv", "parquet": root / "t.parquet", "folder": _folder(df, root / "lake")}


def test_a_table_over_max_rows_is_streamed_alike_from_csv_parquet_and_a_folder(sources, tmp_path):
    found = {}
    for kind, path in sources.items():
        profile = _prepare(path, tmp_path / kind)
        assert profile["test"]["streamed_from_rows"] == ROWS
        found[kind] = _splits(tmp_path / kind)
    u = row_uniform(0, ROWS, seed=42, salt=1)
    assert len(found["csv"]["test"]) == int((u < 0.2).sum())  # every test row (fewer than max_rows of them)
    kept = len(found["csv"]["train"]) + len(found["csv"]["val"]) + len(found["csv"]["val_anomalies"])
    assert abs(kept - 1500) < 150  # a seeded sample of about max_rows of the other rows
    assert 0.15 < len(found["csv"]["val"]) / (len(found["csv"]["train"]) + len(found["csv"]["val"])) < 0.25
    for kind in ("parquet", "folder"):
        for split, x in found["csv"].items():
            np.testing.assert_array_equal(found[kind][split], x, err_msg=f"{kind} {split}")


def test_the_split_does_not_follow_the_batches(sources, tmp_path, monkeypatch):
    _prepare(sources["folder"], tmp_path / "default")
    monkeypatch.setattr(tables, "BATCH_ROWS", 97)  # batches across the files' edges, the last one short
    _prepare(sources["folder"], tmp_path / "small")
    for split, x in _splits(tmp_path / "default").items():
        np.testing.assert_array_equal(_splits(tmp_path / "small")[split], x, err_msg=split)


def test_the_streamed_test_rows_are_the_source_rows_encoded(sources, tmp_path):
    from aeops.data.raw import raw_split

    _prepare(sources["parquet"], tmp_path / "out", max_rows=1000)  # fewer than the ~1,000 test rows: a seeded share
    df = _table()
    test = df[row_uniform(0, ROWS, seed=42, salt=1) < 0.2]
    back, split = raw_split(str(tmp_path / "out"), "test", head=10_000)
    assert 900 < len(back) <= 1000 < len(test)
    chosen = test[row_uniform(0, ROWS, seed=42, salt=3)[test.index] < 1000 / len(test)]
    np.testing.assert_allclose(back["a"].to_numpy(), chosen["a"].to_numpy(), rtol=1e-5)  # float32 storage
    np.testing.assert_array_equal(back["cat"].to_numpy(), chosen["cat"].to_numpy())
    assert back["b"].isna().sum() == chosen["b"].isna().sum() > 0
    np.testing.assert_array_equal(split.is_anomaly, chosen["is_anomaly"].to_numpy())
    assert pq.ParquetFile(tmp_path / "out" / "test.parquet").num_row_groups == 1  # one per batch (one batch here)


def test_string_classes_in_a_streamed_table(tmp_path):
    df = _table(4000).drop(columns="is_anomaly")
    df["kind"] = np.where(df["a"] > 3, "bad", np.where(df["b"] > 1.5, "odd", "ok"))
    df.to_csv(tmp_path / "t.csv", index=False)
    prepare(PrepareConfig(source="table", path=str(tmp_path / "t.csv"), label_column="kind", normal_classes=["ok"],
                          max_rows=1000, output_dir=str(tmp_path / "out")))
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["label_names"] == ["bad", "odd", "ok"]
    test = load_split(tmp_path / "out", "test")
    truth = df["kind"][row_uniform(0, 4000, seed=42, salt=1) < 0.2].to_numpy()
    np.testing.assert_array_equal(np.asarray(meta["label_names"])[test.labels], truth)
    np.testing.assert_array_equal(test.is_anomaly, (truth != "ok").astype(np.int8))
    assert set(load_split(tmp_path / "out", "train").labels) == {2}  # train keeps the normal class only


def test_a_small_parquet_folder_is_read_whole_with_partition_columns(tmp_path):
    df = _table(600)
    for year, part in ((2024, df.iloc[:300]), (2025, df.iloc[300:])):
        (tmp_path / "lake" / f"year={year}").mkdir(parents=True)
        part.to_parquet(tmp_path / "lake" / f"year={year}" / "part.parquet", index=False)
    (tmp_path / "lake" / "_SUCCESS").write_text("")  # Spark's marker files are skipped
    source = TableSource(tmp_path / "lake")
    assert source.columns == [*df.columns, "year"] and source.count_rows() == 600
    profile = _prepare(tmp_path / "lake", tmp_path / "out", max_rows=None)
    assert "streamed_from_rows" not in profile["test"] and profile["column_roles"]["year"] == "numeric"


def test_a_folder_whose_files_disagree_is_refused_in_one_line(tmp_path):
    good = _table(100)
    cases = {
        "missing": (good.drop(columns="b"), "part-00001.parquet: column 'b' is missing (it is in part-00000.parquet)"),
        "type": (good.assign(b="text"), "part-00001.parquet: column 'b' is large_string but double in part-00000.parquet"),
    }
    for name, (other, message) in cases.items():
        root = tmp_path / name
        root.mkdir()
        good.to_parquet(root / "part-00000.parquet", index=False)
        other.to_parquet(root / "part-00001.parquet", index=False)
        with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
            _prepare(root, tmp_path / f"out-{name}")
        assert "\n" not in str(err.value) and not (tmp_path / f"out-{name}").exists()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no tables here")
    with pytest.raises(DataError, match="folder holds no Parquet files"):
        _prepare(tmp_path / "empty", tmp_path / "out-empty")
    widened = tmp_path / "widened"  # integers in one file, floats (a gap) in another: read as floats
    widened.mkdir()
    good.assign(n=np.arange(100)).to_parquet(widened / "a.parquet", index=False)
    good.assign(n=np.where(np.arange(100) % 7 == 0, np.nan, np.arange(100.0))).to_parquet(widened / "b.parquet", index=False)
    assert TableSource(widened).read()["n"].isna().sum() == 15


def test_row_uniform_is_uniform_and_positional():
    u = row_uniform(0, 200_000, seed=1, salt=1)
    assert abs(u.mean() - 0.5) < 0.005 and 0 <= u.min() and u.max() < 1
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 19_000
    np.testing.assert_array_equal(row_uniform(1234, 10, seed=1, salt=1), u[1234:1244])
    assert not np.array_equal(row_uniform(0, 100, seed=2, salt=1), u[:100])
    assert abs(np.corrcoef(u[:50_000], row_uniform(0, 50_000, seed=1, salt=2))[0, 1]) < 0.02
