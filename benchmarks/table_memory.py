"""Benchmark: peak memory and time of `prepare` and `train` on a table as it grows (`--rows` and 4× as many).

Writes a generated table of 30 columns (22 numbers, 3 of them with 5 % empty cells; 4 text categories;
an ISO timestamp; an `id`; a label-free 0/1 `is_anomaly`, 2 % planted anomalies) as one Parquet file
(`--format parquet`, row groups of 250,000), a folder of 4 Parquet files (`folder`) or a CSV (`csv`),
then runs aeops' own `prepare` (anomaly_column is_anomaly, every other param at its default, so a table
of more than prepare.max_rows rows is streamed) and `train` (the default MLP, `--epochs` epochs) on it,
each in a fresh process. Per process: peak resident memory (ru_maxrss), peak anonymous memory (RssAnon,
sampled every 20 ms) and wall seconds. Memory that does not follow the table shows as a large/small
ratio near 1 (the goal: under 1.3); memory that does shows as a ratio near 4.
Usage: python benchmarks/table_memory.py [--rows 1000000] [--format parquet] [--max-rows N] [--epochs 1] [--out DIR]
       [--compare OTHER.json ...]  (the results of other runs, shown beside: another commit's src on PYTHONPATH, or --max-rows)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_memory import _anon_mb, code_version  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
STAGES = ["prepare", "train"]
CHUNK = 250_000
STAGE = r"""
import json, resource, sys
from aeops.config import MlflowConfig, PrepareConfig, TrainConfig
args = json.loads(sys.argv[1])
extra = {} if args["max_rows"] is None else {"max_rows": args["max_rows"]}
if args["stage"] == "prepare":
    from aeops.data.prepare import prepare
    profile = prepare(PrepareConfig(source="table", path=args["path"], anomaly_column="is_anomaly", normal_classes=None,
                                    **extra))
    info = {"train_rows": profile["train"]["rows"], "test_rows": profile["test"]["rows"],
            "streamed": "streamed_from_rows" in profile["test"]}
else:
    from aeops.training.train import train
    train(TrainConfig(max_epochs=args["epochs"], patience=args["epochs"], accelerator="cpu", progress_bar=False,
                      ensemble=1), MlflowConfig(experiment="table-memory"))
    info = {}
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **info}))
"""


def _chunk(rng: np.random.Generator, start: int, n: int) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {"id": np.arange(start, start + n)}
    base = rng.normal(size=(n, 4))
    anomaly = rng.random(n) < 0.02
    for j in range(22):  # correlated numbers: 4 factors plus noise; anomalies break the pattern
        x = base[:, j % 4] * (1 + j / 10) + 0.3 * rng.normal(size=n)
        x[anomaly] += rng.normal(scale=3.0, size=int(anomaly.sum()))
        if j < 3:
            x[rng.random(n) < 0.05] = np.nan
        cols[f"x{j:02d}"] = x
    for j, levels in enumerate((["a", "b", "c"], ["north", "south", "east", "west"], ["web", "shop", "phone"],
                                [f"p{k}" for k in range(12)])):
        pick = np.clip((base[:, j] * 0.8 + len(levels) / 2).astype(int), 0, len(levels) - 1)
        cols[f"cat{j}"] = np.asarray(levels, dtype=object)[pick]
    times = np.datetime64("2026-01-01T00:00:00") + (start + np.arange(n)) * np.timedelta64(7, "s")
    cols["event_time"] = np.datetime_as_string(times, unit="s")
    cols["is_anomaly"] = anomaly.astype(np.int8)
    return cols


def write_table(path: Path, rows: int, fmt: str, seed: int) -> Path:
    """The generated table at `path` (a file, or a folder of 4 files); returns what prepare.path names."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    target = path if fmt == "folder" else path.with_suffix(".csv" if fmt == "csv" else ".parquet")
    if fmt == "folder":
        target.mkdir(parents=True)
    writer: Any = None
    current = None
    per_file = max(CHUNK, -(-rows // 4))
    for start in range(0, rows, CHUNK):
        table = pa.table(_chunk(rng, start, min(CHUNK, rows - start)))
        if fmt == "folder":
            part = target / f"part-{start // per_file:05d}.parquet"
            if part != current:
                if writer is not None:
                    writer.close()
                writer, current = pq.ParquetWriter(str(part), table.schema), part
            writer.write_table(table)
        elif fmt == "csv":
            if writer is None:
                writer = pacsv.CSVWriter(str(target), table.schema)
            writer.write_table(table)
        else:
            if writer is None:
                writer = pq.ParquetWriter(str(target), table.schema)
            writer.write_table(table)
    if writer is not None:
        writer.close()
    return target


def run_stages(work: Path, table: Path, *, epochs: int, max_rows: int | None) -> dict[str, dict]:
    """Each stage in a fresh process in `work`: peak RSS and peak anonymous memory (MB), wall seconds."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "PYTHONWARNINGS": "ignore"}
    out = {}
    for stage in STAGES:
        start = time.perf_counter()
        arg = json.dumps({"stage": stage, "path": str(table), "epochs": epochs, "max_rows": max_rows})
        with tempfile.TemporaryFile("w+") as log:
            proc = subprocess.Popen([sys.executable, "-c", STAGE, arg], cwd=work, env=env, stdout=log, stderr=log, text=True)
            anon = 0.0
            while proc.poll() is None:
                anon = max(anon, _anon_mb(proc.pid))
                time.sleep(0.02)
            log.seek(0)
            text = log.read()
        if proc.returncode != 0:
            raise SystemExit(f"{stage} failed on {table}:\n{text[-3000:]}")
        found = json.loads(text.strip().splitlines()[-1])
        out[stage] = {**{k: v for k, v in found.items() if k != "peak_rss_mb"}, "peak_rss_mb": round(found["peak_rss_mb"], 1),
                      "peak_anon_mb": round(anon, 1), "seconds": round(time.perf_counter() - start, 1)}
        print(f"  {stage}: peak RSS {found['peak_rss_mb']:,.0f} MB, peak anonymous {anon:,.0f} MB, "
              f"{out[stage]['seconds']} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the small table (the large one has 4×)")
    ap.add_argument("--format", choices=["parquet", "folder", "csv"], default="parquet")
    ap.add_argument("--max-rows", type=int, default=None, help="prepare.max_rows (default: the params default)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--compare", type=Path, nargs="*", default=[],
                    help="table_memory.json files of other runs (another code version, another --max-rows) to show beside")
    args = ap.parse_args()
    compared = [json.loads(path.read_text()) for path in args.compare]
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "aeops_commit": code_version(),
                    "format": args.format, "columns": 30, "max_rows": args.max_rows, "epochs": args.epochs, "tables": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.rows, 4 * args.rows):
            work = Path(tmp) / f"n{n}"
            work.mkdir()
            table = write_table(work / "table", n, args.format, seed=n)
            size = sum(f.stat().st_size for f in ([table] if table.is_file() else table.iterdir()))
            print(f"{n:,} rows × 30 columns ({args.format}, {size / 1e6:,.0f} MB on disk)", flush=True)
            result["tables"][str(n)] = {"file_mb": round(size / 1e6, 1),
                                        "stages": run_stages(work, table, epochs=args.epochs, max_rows=args.max_rows)}
    small, large = (result["tables"][str(n)]["stages"] for n in (args.rows, 4 * args.rows))
    result["large_over_small"] = {s: {k: round(large[s][k] / small[s][k], 2) for k in ("peak_rss_mb", "peak_anon_mb", "seconds")}
                                  for s in STAGES}
    result["compared"] = [{k: v for k, v in c.items() if k != "compared"} for c in compared]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["large_over_small"]))


if __name__ == "__main__":
    main()
