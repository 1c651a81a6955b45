"""Benchmark: real mixed-type tables and messy versions of the numeric ones, aeops vs kNN and IsolationForest.

Sets: the two real mixed tables in ../shared/datasets/mixed (categorical columns, missing cells, an R
row-name column) and, for each numeric table in ../shared/datasets/tabular, a messy copy made here
with a fixed seed: 10 % of the feature cells emptied at random, a categorical `segment` column (the
quartile of the widest feature, as text), a unique `customer_id`, an ISO `event_time` and the pandas
index written by `to_csv()` (`Unnamed: 0`). Each set runs through the real pipeline with params.yaml's
defaults (benchmarks/tabular.py's `job`: prepare → tune → train → evaluate); the baselines are
evaluate's, fitted on the same prepared rows, i.e. scikit-learn's standard preprocessing (one-hot,
median imputation with missing indicators, standardisation; identifiers and raw timestamps left out).
A messy table and its clean original have the same rows in the same order, so the same seeds give
the same splits: their difference is what the mess costs.
Results: results/mixed.json and a Markdown table.
Usage: python benchmarks/mixed.py [--sets breastw,wbc] [--splits 1] [--jobs 2] [--no-mixed]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tabular  # noqa: E402  (the same job: the real stages in a temporary project)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
OUT = ROOT / "benchmarks" / "results" / "mixed.json"
METHODS = ("model", "knn_distance", "isolation_forest", "pca")
NAMES = {"model": "aeops", "knn_distance": "kNN distance", "isolation_forest": "IsolationForest", "pca": "PCA"}
MISSING_SHARE = 0.1
CONFIG = "defaults, no rescoring"  # tabular's default run without its scoring options (evaluate reruns)
tabular.CONFIGS[CONFIG] = {}


def _job(name: str, seed: int, folder: str) -> dict:
    return tabular.job(CONFIG, name, seed, folder)  # in a fresh process per run, as tabular.py does


def messy(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The table as an export would hold it: gaps, a text category, an id, a timestamp (the index is added on writing)."""
    rng = np.random.default_rng(seed)
    features = [c for c in df.columns if c != "is_anomaly"]
    out = df.copy()
    widest = max(features, key=lambda c: float(df[c].std()))
    out.insert(0, "segment", pd.qcut(df[widest].rank(method="first"), 4, labels=["low", "mid", "high", "top"]).astype(str))
    values = np.array(out[features], dtype=np.float64)
    values[rng.random(values.shape) < MISSING_SHARE] = np.nan
    out[features] = values
    out.insert(0, "customer_id", [f"C{10**7 + i}" for i in rng.permutation(len(df))])
    stamps = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86400 * 90, len(df)), unit="s")
    out.insert(1, "event_time", stamps.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return out


def build(folder: Path, sets: list[str], mixed: bool) -> list[tuple[str, str]]:
    """Write the sets into `folder`; return (set name, kind) pairs, kind = mixed, messy or clean."""
    found: list[tuple[str, str]] = []
    if mixed:
        for path in sorted((SHARED / "mixed").glob("*.csv")):
            (folder / path.name).write_bytes(path.read_bytes())
            found.append((path.stem, "mixed"))
    for name in sets:
        df = pd.read_csv(SHARED / "tabular" / f"{name}.csv")
        df.to_csv(folder / f"{name}.csv", index=False)
        messy(df).to_csv(folder / f"{name}_messy.csv")  # index=True: the saved pandas index prepare must catch
        found += [(name, "clean"), (f"{name}_messy", "messy")]
    return found


def summarize(runs: list[dict]) -> dict:
    """Per set: mean AUROC/AUPRC per method over splits; per kind: the mean over sets and the wins."""
    by_set: dict[str, dict] = {}
    for r in runs:
        if "error" in r:
            continue
        entry = by_set.setdefault(r["set"], {"kind": r["kind"], "runs": []})
        entry["runs"].append(r)
    table = {}
    for name, entry in by_set.items():
        rs = entry["runs"]
        table[name] = {"kind": entry["kind"], "splits": len(rs), "seconds": round(statistics.mean(r["seconds"] for r in rs), 1),
                       **{m: {k: round(statistics.mean(r[m][k] for r in rs), 4) for k in ("auroc", "auprc")} for m in METHODS}}
    kinds = {}
    for kind in ("mixed", "messy", "clean"):
        rows = [v for v in table.values() if v["kind"] == kind]
        if rows:
            kinds[kind] = {m: round(statistics.mean(v[m]["auroc"] for v in rows), 4) for m in METHODS}
            kinds[kind]["aeops wins"] = sum(v["model"]["auroc"] >= max(v[b]["auroc"] for b in METHODS[1:3]) for v in rows)
            kinds[kind]["sets"] = len(rows)
    pairs = {name.removesuffix("_messy"): round(v["model"]["auroc"] - table[name.removesuffix("_messy")]["model"]["auroc"], 4)
             for name, v in table.items() if v["kind"] == "messy" and name.removesuffix("_messy") in table}
    return {"sets": table, "kinds": kinds, "messy_minus_clean": pairs}


def markdown(summary: dict) -> str:
    lines = ["| set | kind | splits | aeops | kNN distance | IsolationForest | PCA | s per run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, v in sorted(summary["sets"].items(), key=lambda kv: (kv[1]["kind"], kv[0])):
        cells = " | ".join(f"{v[m]['auroc']:.3f}" for m in METHODS)
        lines.append(f"| {name} | {v['kind']} | {v['splits']} | {cells} | {v['seconds']} |")
    lines += ["", "| kind | sets | aeops | kNN distance | IsolationForest | PCA | aeops ≥ both baselines |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for kind, k in summary["kinds"].items():
        lines.append(f"| {kind} | {k['sets']} | " + " | ".join(f"{k[m]:.3f}" for m in METHODS) + f" | {k['aeops wins']} |")
    if summary["messy_minus_clean"]:
        gaps = ", ".join(f"{n} {d:+.3f}" for n, d in summary["messy_minus_clean"].items())
        worst = min(summary["messy_minus_clean"].values())
        lines += ["", f"aeops AUROC, messy minus clean (same splits): {gaps}; worst {worst:+.3f}."]
    if "encode_cost" in summary:
        cost = "; ".join(f"{n}: aeops {c['aeops_ms']} ms, scikit-learn ColumnTransformer {c['sklearn_ms']} ms"
                         for n, c in summary["encode_cost"].items())
        lines += ["", f"Preprocessing per call on credit_data (median): {cost}."]
    return "\n".join(lines) + "\n"


def encode_cost(repeats: int = 200) -> dict:
    """Serving cost of the preprocessing on credit_data: aeops' encoder (fitted by prepare, applied by
    aeops.scoring.preprocess) vs the same steps as a fitted scikit-learn ColumnTransformer, per call."""
    import logging

    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from aeops.config import PrepareConfig
    from aeops.data.prepare import prepare
    from aeops.data.prepared import load_scaler
    from aeops.scoring.preprocess import Preprocessor

    logging.disable(logging.WARNING)
    path = SHARED / "mixed" / "credit_data.csv"
    df = pd.read_csv(path).drop(columns=["rownames", "is_anomaly"])
    with tempfile.TemporaryDirectory() as tmp:
        prepare(PrepareConfig(source="table", path=str(path), anomaly_column="is_anomaly", normal_classes=None,
                              output_dir=tmp))
        prep = Preprocessor(load_scaler(tmp))
    cats = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    nums = [c for c in df.columns if c not in cats]
    sk = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=0.01), cats),
                            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
                             nums)]).fit(df)

    def per_call(fn, rows: pd.DataFrame) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(rows)
            times.append(time.perf_counter() - t)
        return round(1e3 * statistics.median(times), 3)

    ours = lambda rows: prep.scale(prep.rows(rows).raw)  # noqa: E731
    out = {}
    for n in (1, 1000):
        rows = df.sample(n, random_state=0, replace=n > len(df))
        out[f"{n} rows"] = {"aeops_ms": per_call(ours, rows), "sklearn_ms": per_call(sk.transform, rows)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=None, help="numeric tables to make messy copies of (default: all 14; none: the mixed tables only)")
    ap.add_argument("--splits", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-mixed", action="store_true", help="leave out the two real mixed tables")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    sets = args.sets.split(",") if args.sets else sorted(p.stem for p in (SHARED / "tabular").glob("*.csv"))
    sets = [] if sets == ["none"] else sets
    start = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        found = build(folder, sets, not args.no_mixed)
        kind = dict(found)
        with ProcessPoolExecutor(max_workers=args.jobs, max_tasks_per_child=1) as pool:
            futures = [pool.submit(_job, name, seed, str(folder)) for name, _ in found
                       for seed in range(args.splits)]
            for f in as_completed(futures):
                run = f.result()
                run["kind"] = kind[run["set"]]
                runs.append(run)
                print(f"{run['set']} seed {run['seed']}: " + (run.get("error") or
                      f"aeops {run['model']['auroc']:.3f}, kNN {run['knn_distance']['auroc']:.3f}, "
                      f"IF {run['isolation_forest']['auroc']:.3f} ({run['seconds']} s)"), flush=True)
    summary = summarize(runs)
    summary["encode_cost"] = encode_cost()
    result = {"splits": args.splits, "tables": sets, "mixed": not args.no_mixed, "missing_share": MISSING_SHARE,
              "seconds": round(time.perf_counter() - start), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "runs": sorted(runs, key=lambda r: (r["set"], r["seed"])), **summary}
    result["table_md"] = markdown(summary)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(result["table_md"])


if __name__ == "__main__":
    main()
