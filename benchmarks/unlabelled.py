"""Benchmark: no labels, anomalies inside — training on contaminated rows, aeops vs kNN and IsolationForest.

The unlabelled protocol: each table (the 14 in ../shared/datasets/tabular and the 2 real mixed ones in
../shared/datasets/mixed) is split by a seeded permutation into 60 % training rows, anomalies included
and the `is_anomaly` column removed, and 40 % test rows. The training file goes through the real
pipeline (prepare → tune → train → evaluate, params.yaml's defaults, `source: table` without any
anomaly protocol); the test rows, raw, are scored by the bundle evaluate wrote, as serving scores them.
The baselines, kNN distance and IsolationForest (evaluate's settings), are fitted on the same 60 %,
encoded by the same preprocessing (standardised; a mixed table's one-hot levels and imputed cells as
the model sees them). `--configs` compares training options, e.g. robust training on and off, each
on the same splits. Results: results/unlabelled.json and a Markdown table (mean AUROC/AUPRC, wins per
set, seconds per run).
Usage: python benchmarks/unlabelled.py [--sets wbc,glass] [--splits 1] [--first-split 0] [--jobs 2] [--configs robust off,robust on]
       [--no-mixed] [--tables DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tabular  # noqa: E402  (params for a run: today's params.yaml with the data settings changed)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
OUT = Path(__file__).resolve().parent / "results" / "unlabelled.json"
TRAIN_SHARE = 0.6
BASELINES = ("knn_distance", "isolation_forest")
NAMES = {"knn_distance": "kNN distance", "isolation_forest": "IsolationForest"}
CONFIGS: dict[str, dict[str, object]] = {  # dotted params keys; "default" is params.yaml as it stands
    "default": {},
    "robust off": {"train.robust": False},
    "robust on": {"train.robust": True},  # at the default share (20 %)
    "robust 10%": {"train.robust": True, "train.robust_share": 0.1},
    "robust 20%": {"train.robust": True, "train.robust_share": 0.2},
}
tabular.CONFIGS.update(CONFIGS)


def split(df: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows without labels, test rows with them): a seeded 60/40 permutation of all rows."""
    order = np.random.default_rng(seed).permutation(len(df))
    cut = int(round(TRAIN_SHARE * len(df)))
    return df.iloc[order[:cut]].drop(columns="is_anomaly"), df.iloc[order[cut:]]


def job(config: str, name: str, path: str, seed: int) -> dict:
    """One run in a temporary project: the pipeline on the training rows, then the test rows scored raw."""
    import torch

    from aeops.cli import run_stage

    torch.set_num_threads(int(os.environ.get("AEOPS_BENCH_THREADS", "1")))
    train_rows, test_rows = split(pd.read_csv(path), seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        train_rows.to_csv("train.csv", index=False)
        params = tabular._run_params({"source": "table", "path": "train.csv", "anomaly_column": None,
                                      "normal_classes": None, "seed": seed}, config)
        Path("params.yaml").write_text(yaml.safe_dump(params))
        for stage in ("prepare", "tune", "train", "evaluate"):
            if run_stage(stage) != 0:
                return {"config": config, "set": name, "seed": seed, "error": f"{stage} failed"}
        seconds = time.perf_counter() - start
        return {"config": config, "set": name, "seed": seed, "seconds": round(seconds, 1),
                "test_rows": len(test_rows), "test_anomalies": int(test_rows["is_anomaly"].sum()),
                **_scores(test_rows, train_rows, params)}


def _scores(test_rows: pd.DataFrame, train_rows: pd.DataFrame, params: dict) -> dict:
    """AUROC/AUPRC of the bundle's score and of the baselines on the test rows; the flagged share."""
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import average_precision_score, roc_auc_score

    from aeops.scoring.bundle import ModelBundle
    from aeops.scoring.rule import knn_distances, knn_index
    from aeops.scoring.scorer import Scorer

    bundle = ModelBundle.load(params["evaluate"]["bundle_dir"])
    scorer = Scorer(bundle)
    y = test_rows["is_anomaly"].to_numpy()
    raw = test_rows.drop(columns="is_anomaly")
    scored = scorer.score(raw)
    prep = scorer.preprocessor
    fit_x, test_x = (np.nan_to_num(prep.scale(prep.rows(rows).raw)) for rows in (train_rows, raw))
    ev = params["evaluate"]
    forest = IsolationForest(n_estimators=ev["isolation_forest_trees"], random_state=ev["seed"]).fit(fit_x)
    scores = {"model": scored["anomaly_score"].to_numpy(),
              "knn_distance": knn_distances(knn_index(fit_x, ev["knn_neighbors"]), test_x),
              "isolation_forest": -forest.score_samples(test_x)}
    out = {m: {"auroc": round(float(roc_auc_score(y, s)), 4), "auprc": round(float(average_precision_score(y, s)), 4)}
           for m, s in scores.items()}
    flagged = scored["is_anomaly"].to_numpy()
    out["model"] |= {"flagged_share": round(float(flagged.mean()), 4),
                     "flagged_normal_share": round(float(flagged[y == 0].mean()), 4),
                     "flagged_anomaly_share": round(float(flagged[y == 1].mean()), 4),
                     "contamination": bundle.scoring.contamination, "true_contamination": round(float(y.mean()), 4)}
    return out


def tables(sets: list[str] | None, mixed: bool, folder: Path = SHARED / "tabular") -> dict[str, Path]:
    found = {p.stem: p for p in sorted(folder.glob("*.csv"))}
    if sets is not None:
        found = {s: found[s] for s in sets if s in found}
    if mixed:
        found |= {p.stem: p for p in sorted((SHARED / "mixed").glob("*.csv"))}
    return found


def summarize(runs: list[dict], configs: list[str]) -> dict:
    """Per config: mean AUROC/AUPRC over sets (each set's mean over splits), sets where aeops ≥ both
    baselines, mean seconds per run; per set, every method's AUROC."""
    ok = [r for r in runs if "error" not in r]
    per_set: dict[str, dict[str, list[float]]] = {}
    for r in ok:
        entry = per_set.setdefault(r["set"], {})
        entry.setdefault(f"aeops ({r['config']})", []).append(r["model"]["auroc"])
        entry.setdefault(f"aeops ({r['config']}) auprc", []).append(r["model"]["auprc"])
        for b in BASELINES:
            if r["config"] == configs[0]:  # the same rows for every config: counted once
                entry.setdefault(NAMES[b], []).append(r[b]["auroc"])
                entry.setdefault(f"{NAMES[b]} auprc", []).append(r[b]["auprc"])
    means = {s: {k: round(statistics.mean(v), 4) for k, v in e.items()} for s, e in per_set.items()}
    complete = [s for s, e in means.items() if all(f"aeops ({c})" in e for c in configs) and NAMES[BASELINES[0]] in e]
    methods = [f"aeops ({c})" for c in configs] + [NAMES[b] for b in BASELINES]
    overall = {}
    for m in methods:
        overall[m] = {"mean_auroc": round(statistics.mean(means[s][m] for s in complete), 4) if complete else None,
                      "mean_auprc": round(statistics.mean(means[s][f"{m} auprc"] for s in complete), 4) if complete else None}
        if m.startswith("aeops"):
            overall[m]["wins"] = sum(means[s][m] >= max(means[s][NAMES[b]] for b in BASELINES) for s in complete)
            config = m[len("aeops (") : -1]
            secs = [r["seconds"] for r in ok if r["config"] == config]
            overall[m]["seconds_per_run"] = round(statistics.mean(secs), 1) if secs else None
            for key in ("flagged_normal_share", "flagged_anomaly_share", "contamination", "true_contamination"):
                got = [r["model"][key] for r in ok if r["config"] == config and r["model"].get(key) is not None]
                overall[m][key] = round(statistics.mean(got), 4) if got else None
    return {"sets": means, "complete_sets": sorted(complete), "overall": overall, "methods": methods}


def markdown(summary: dict, splits: int) -> str:
    methods = summary["methods"]
    n = len(summary["complete_sets"])
    lines = [f"| method | mean AUROC | mean AUPRC | sets ≥ both baselines (of {n}) | s per run | normal / anomalous test rows "
             "flagged | contamination estimated / true |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for m in methods:
        o = summary["overall"][m]
        if o["mean_auroc"] is None:
            continue
        pct = lambda v: "—" if v is None else f"{v:.1%}"  # noqa: E731
        extra = (f"{o['wins']} | {o['seconds_per_run']} | {pct(o['flagged_normal_share'])} / "
                 f"{pct(o['flagged_anomaly_share'])} | {pct(o['contamination'])} / {pct(o['true_contamination'])}"
                 if "wins" in o else "— | — | — | —")
        lines.append(f"| {m} | {o['mean_auroc']:.3f} | {o['mean_auprc']:.3f} | {extra} |")
    over = f"mean over {splits} splits" if splits > 1 else "one split"
    lines += ["", f"Per set, AUROC ({over}):", "", "| set | " + " | ".join(methods) + " |",
              "| --- |" + " --- |" * len(methods)]
    for s in summary["complete_sets"]:
        lines.append(f"| {s} | " + " | ".join(f"{summary['sets'][s][m]:.3f}" for m in methods) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=None, help="numeric tables (default: all 14; none: the mixed ones only)")
    ap.add_argument("--splits", type=int, default=1)
    ap.add_argument("--first-split", type=int, default=0, help="seed of the first split (to add splits to a run)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--configs", default="robust off,robust on", help=f"comma-separated, of: {', '.join(CONFIGS)}")
    ap.add_argument("--no-mixed", action="store_true", help="leave out the two real mixed tables")
    ap.add_argument("--tables", default=None, help="a folder of CSV tables with an is_anomaly column instead "
                                                  "(the shared mixed ones left out)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    configs = args.configs.split(",")
    if unknown := [c for c in configs if c not in CONFIGS]:
        sys.exit(f"unknown config(s) {unknown}; known: {list(CONFIGS)}")
    sets = None if args.sets is None else [] if args.sets == "none" else args.sets.split(",")
    found = (tables(sets, False, Path(args.tables)) if args.tables else tables(sets, not args.no_mixed))
    if not found:
        sys.exit(f"unlabelled benchmark skipped: no tables under {SHARED}")
    # big tables first (packing), every config of a set together: a run cut short still compares configs
    seeds = range(args.first_split, args.first_split + args.splits)
    jobs = sorted(((c, s, str(p), seed) for s, p in found.items() for seed in seeds for c in configs),
                  key=lambda j: (-Path(j[2]).stat().st_size, j[1], j[3], configs.index(j[0])))
    start = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs, max_tasks_per_child=1) as pool:
        for fut in as_completed([pool.submit(job, *j) for j in jobs]):
            r = fut.result()
            runs.append(r)
            done = r.get("error") or (f"aeops {r['model']['auroc']:.3f}, kNN {r['knn_distance']['auroc']:.3f}, "
                                      f"IF {r['isolation_forest']['auroc']:.3f} ({r['seconds']} s)")
            print(f"{r['config']:>12} {r['set']:>12} split {r['seed']}: {done}", flush=True)
    summary = summarize(runs, configs)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "splits": args.splits, "configs": configs,
              "train_share": TRAIN_SHARE, "wall_seconds": round(time.perf_counter() - start), **summary,
              "runs": sorted(runs, key=lambda r: (r["set"], r["seed"], r["config"]))}
    result["table_md"] = markdown(summary, args.splits)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(result["table_md"])


if __name__ == "__main__":
    main()
