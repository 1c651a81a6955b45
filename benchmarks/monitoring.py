"""Benchmark: how often `aeops monitor` cries wolf on clean batches, and how often it catches shifted ones.

For each data set a model is built by the real stages (prepare → train → evaluate → register) with
params.yaml's defaults, except: tune off (train.model as given; monitoring does not depend on the
search), the data settings, and `prepare.test_fraction` 0.4 for every set, so that enough normal rows
are held out (MNIST keeps its t10k test file). Then, with the registered model's reference profile:
- false alarms: `--batches` batches of `--rows` rows drawn (without replacement inside a batch) from
  the held-out normal test rows; the share with verdict `drift` (the budget `monitor.alpha` is 0.01);
- detection: `--shifted` batches per shift of the same size: images — anomalies (other digits) mixed
  in at 10 % / 50 %, rotated 15°, Gaussian noise (sigma 10 % of the pixel range); tables — anomalies
  mixed in at 10 %, one feature (random per batch) shifted by one std of the normal rows, all features × 1.5,
  pre-scaled input (the scaler applied before sending);
- throughput of `monitor_file` (the command's work: reading Parquet, scoring, binning, tests) in rows/s.
Results: results/monitoring.json and a Markdown table.
Usage: python benchmarks/monitoring.py [--sets digits,mnist,magic_gamma,pageblocks] [--batches 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
OUT = ROOT / "benchmarks" / "results" / "monitoring.json"
SETS = {
    "digits": {"source": "digits", "normal_classes": list(range(9))},
    "mnist": {"source": "mnist", "path": str(SHARED / "mnist"), "normal_classes": [0]},
    "magic_gamma": {"source": "table", "path": str(SHARED / "tabular" / "magic_gamma.csv"),
                    "anomaly_column": "is_anomaly", "normal_classes": None},
    "pageblocks": {"source": "table", "path": str(SHARED / "tabular" / "pageblocks.csv"),
                   "anomaly_column": "is_anomaly", "normal_classes": None},
}
TEST_FRACTION = 0.4


def build(name: str, workdir: Path, epochs: int | None) -> dict:
    """Run the stages in `workdir`; return the model URI, the scorer and the held-out rows in raw units."""
    import mlflow

    from aeops.cli import run_stage
    from aeops.data.prepared import load_meta
    from aeops.registry.register import raw_split

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"] |= {**SETS[name], "test_fraction": TEST_FRACTION}
    params["tune"]["enabled"] = False
    params["train"] |= {"progress_bar": False, "accelerator": "cpu"}
    if epochs:
        params["train"]["max_epochs"] = epochs
    params["mlflow"]["experiment"] = f"monitoring-bench-{name}"
    os.chdir(workdir)
    Path("params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("prepare", "train", "evaluate", "register"):
        if run_stage(stage) != 0:
            raise SystemExit(f"{name}: stage {stage} failed")
    uri = yaml.safe_load(Path("registry/registered.json").read_text())["model_uri"]
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    scorer = mlflow.pyfunc.load_model(uri).unwrap_python_model().scorer
    df, split = raw_split("data/prepared")
    meta = load_meta("data/prepared")
    return {"uri": uri, "scorer": scorer, "normal": df[split.is_anomaly == 0].reset_index(drop=True),
            "anomalies": df[split.is_anomaly == 1].reset_index(drop=True), "image_shape": meta.image_shape}


def _rotate(frame: pd.DataFrame, shape: list[int], degrees: float) -> pd.DataFrame:
    from scipy.ndimage import rotate

    images = frame.to_numpy(np.float64).reshape(-1, *shape)
    turned = rotate(images, degrees, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0)
    return pd.DataFrame(turned.reshape(len(frame), -1), columns=frame.columns)


def shifts(model: dict, rng: np.random.Generator, rows: int) -> dict:
    """Shift name → a function drawing one shifted batch."""
    normal, anomalies, scorer = model["normal"], model["anomalies"], model["scorer"]
    lo, hi = float(normal.to_numpy().min()), float(normal.to_numpy().max())

    def draw(n: int) -> pd.DataFrame:
        return normal.iloc[rng.choice(len(normal), n, replace=False)].reset_index(drop=True)

    def mixed(share: float):
        def make() -> pd.DataFrame:
            k = round(share * rows)
            bad = anomalies.iloc[rng.choice(len(anomalies), k, replace=k > len(anomalies))]
            return pd.concat([draw(rows - k), bad], ignore_index=True)
        return make

    if model["image_shape"]:
        shape = model["image_shape"][-2:]
        return {
            "anomalies 10 %": mixed(0.1), "anomalies 50 %": mixed(0.5),
            "rotated 15°": lambda: _rotate(draw(rows), shape, 15.0).clip(lo, hi),
            "noise σ 10 % of range": lambda: (draw(rows) + rng.normal(0, 0.1 * (hi - lo), (rows, normal.shape[1]))).clip(lo, hi),
        }
    from aeops.scoring.preprocess import apply_scaler

    def one_feature() -> pd.DataFrame:
        batch = draw(rows)
        j = int(rng.integers(batch.shape[1]))
        batch.iloc[:, j] += normal.iloc[:, j].std()
        return batch

    return {
        "anomalies 10 %": mixed(0.1),
        "one feature + 1 std": one_feature,
        "all features × 1.5": lambda: draw(rows) * 1.5,
        "pre-scaled input": lambda: pd.DataFrame(apply_scaler(scorer.preprocessor.scaler, draw(rows).to_numpy()),
                                                 columns=normal.columns),
    }


def measure(name: str, model: dict, args: argparse.Namespace) -> dict:
    from aeops.monitoring.monitor import frame_check, monitor_file

    rng = np.random.default_rng(0)
    scorer, normal = model["scorer"], model["normal"]
    rows = min(args.rows, len(normal))
    clean = [frame_check(scorer, normal.iloc[rng.choice(len(normal), rows, replace=False)].reset_index(drop=True))
             for _ in range(args.batches)]
    alarms = [r for r in clean if r["verdict"] == "drift"]
    result = {
        "held_out_normal_rows": len(normal), "train_rows": scorer.profile.train_rows, "batch_rows": rows,
        "features": len(scorer.features),
        "false_alarms": {"batches": len(clean), "drift": len(alarms), "rate": len(alarms) / len(clean),
                         "fired": _fired(alarms)},
        "median_percentile_clean": float(np.median([r["score"]["median_percentile"] for r in clean])),
        "detection": {},
    }
    for shift, make in shifts(model, rng, rows).items():
        checks = [frame_check(scorer, make()) for _ in range(args.shifted)]
        hits = [r for r in checks if r["verdict"] == "drift"]
        result["detection"][shift] = {"batches": len(checks), "drift": len(hits), "rate": len(hits) / len(checks),
                                      "fired": _fired(hits)}
    big = pd.concat([normal] * int(np.ceil(args.throughput_rows / len(normal))), ignore_index=True)
    big = big.head(args.throughput_rows)
    path = Path("throughput.parquet")
    big.to_parquet(path, index=False)
    timed = monitor_file(model["uri"], str(path), progress=False)
    result["throughput"] = {"rows": timed["rows"], "rows_per_s": timed["rows_per_second"],
                            "seconds_with_model_load": timed["seconds"]}
    return result


def _fired(results: list[dict]) -> dict:
    """How many of these verdicts each check drove: features, anomaly_score, flagged_share."""
    counts = {"features": 0, "anomaly_score": 0, "flagged_share": 0}
    for r in results:
        counts["features"] += r["features_drifted"] > 0
        counts["anomaly_score"] += "anomaly_score" in r["drivers"]
        counts["flagged_share"] += "flagged_share" in r["drivers"]
    return counts


def markdown(report: dict) -> str:
    lines = ["| set | features | held-out normal rows | false alarms | detection (drift / shifted batches) | monitor rows/s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in report["sets"].items():
        fa = r["false_alarms"]
        det = "; ".join(f"{s} {d['drift']}/{d['batches']}" for s, d in r["detection"].items())
        lines.append(f"| {name} | {r['features']} | {r['held_out_normal_rows']} | {fa['drift']}/{fa['batches']} "
                     f"({fa['rate']:.0%}) | {det} | {r['throughput']['rows_per_s']:,.0f} |")
    return "\n".join(lines)


def run_set(name: str, args: argparse.Namespace) -> dict:
    """Build the set's model in a temporary project and measure it."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(name, build(name, Path(tmp), args.epochs), args)
    return result | {"wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--batches", type=int, default=100, help="clean batches per set")
    parser.add_argument("--shifted", type=int, default=20, help="batches per shift")
    parser.add_argument("--rows", type=int, default=500, help="rows per batch")
    parser.add_argument("--epochs", type=int, help="cap train.max_epochs (smoke runs)")
    parser.add_argument("--throughput-rows", type=int, default=100_000)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    report = {"benchmark": "monitoring", "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"test_fraction": TEST_FRACTION},
              "sets": {}}
    for name in args.sets.split(","):
        needs = SETS[name].get("path")
        if needs and not Path(needs).exists():
            print(f"{name}: skipped, {needs} not found", file=sys.stderr)
            continue
        # a fresh process per set: MLflow keeps per-store state that a deleted temp folder would strand
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            report["sets"][name] = pool.submit(run_set, name, args).result()
        print(f"{name}: done in {report['sets'][name]['wall_s']} s", file=sys.stderr)
    report["table_md"] = markdown(report)
    from aeops.io import write_json

    write_json(args.out, report)
    print(report["table_md"])


if __name__ == "__main__":
    main()
