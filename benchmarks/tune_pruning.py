"""Benchmark: the same Optuna study (budget, seed, search space) with and without pruning.

Reports total epochs trained, wall time and best objective for each pruner, measured in one run.
Usage: python benchmarks/tune_pruning.py [--trials 20] [--epochs 15] [--pruners median none]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from aeops.config import MlflowConfig, PrepareConfig, load_section
from aeops.data.prepare import prepare
from aeops.io import write_json
from aeops.tuning.study import tune

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--pruners", nargs="+", default=["median", "none", "hyperband"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tune_pruning.json"))
    args = parser.parse_args()

    base = load_section("tune", ROOT / "params.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.pop("OPTUNA_STORAGE", None)
        prepare(PrepareConfig(normal_classes=list(range(9))))
        warm = {"n_trials": 1, "max_epochs": 1, "study_name": "warm-up", "output_dir": "warm-up", "progress_bar": False}
        tune(base.model_copy(update=warm), MlflowConfig(experiment="bench"))  # imports, DB set-up
        for pruner in args.pruners:
            cfg = base.model_copy(
                update={
                    "pruner": pruner, "n_trials": args.trials, "max_epochs": args.epochs,
                    "study_name": f"bench-{pruner}", "output_dir": f"tune-{pruner}", "progress_bar": False,
                }
            )
            start = time.perf_counter()
            result = tune(cfg, MlflowConfig(experiment="bench"))
            rows.append(
                {
                    "pruner": pruner,
                    "trials": result["trials"],
                    "epochs": result["epochs_trained"],
                    "wall_s": round(time.perf_counter() - start, 1),
                    "best": result["value"],
                }
            )
    ref = next((r for r in rows if r["pruner"] == "none"), rows[0])
    for r in rows:
        r["epochs_vs_none"] = round(r["epochs"] / ref["epochs"], 3)
        r["best_vs_none"] = round(r["best"] / ref["best"], 4)
    report = {
        "benchmark": "tune_pruning",
        "data": "digits (normal 0-8)",
        "trials": args.trials,
        "epochs_per_trial": args.epochs,
        "seed": base.seed,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "rows": rows,
    }
    write_json(args.out, report)
    print("| pruner | complete/pruned/failed | epochs trained | epochs vs none | wall time (s) | best val MSE | best vs none |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        t = r["trials"]
        print(
            f"| {r['pruner']} | {t['COMPLETE']}/{t['PRUNED']}/{t['FAIL']} | {r['epochs']} | {r['epochs_vs_none']:.2f} "
            f"| {r['wall_s']} | {r['best']:.5f} | {r['best_vs_none']:.3f} |"
        )


if __name__ == "__main__":
    main()
