"""Benchmark: attribution — does `explain` name the feature that made a row anomalous?

On each numeric table in ../shared/datasets/tabular, the pipeline runs as `make repro` would (prepare
with the table's `is_anomaly` column as the protocol → tune → train → evaluate; `--configs "tune off"`
skips the search for a quick look). Then every normal test row (raw, as served) gets one anomaly planted:
one of its features, drawn at random, is pushed outside its usual range (beyond the 1st or 99th
percentile of the table's normal rows by half that span, the side drawn at random). The bundle's
`explain` ranks the features of each planted row; so does the per-feature z-score (|value − training
mean| / training std, the standardisation prepare fitted) as a baseline. Reported per set: how often the
planted feature is ranked first (top-1) and among the first three (top-3), and scoring speed in process
on 1,000 rows, plain and with explain=3. Results: results/explain.json and a Markdown table.
Usage: python benchmarks/explain.py [--sets wbc,glass] [--jobs 2] [--configs default] [--tables DIR]
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

TABLES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tabular"
OUT = Path(__file__).resolve().parent / "results" / "explain.json"
CONFIGS: dict[str, dict[str, object]] = {"default": {}, "tune off": {"tune.enabled": False}}
tabular.CONFIGS.update(CONFIGS)
PUSH = 0.5  # how far beyond the 1st/99th percentile, in units of the span between them


def plant(rows: pd.DataFrame, normal: pd.DataFrame, features: list[str], seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """`rows` with one feature per row pushed outside its usual range; which feature (an index into `features`)."""
    rng = np.random.default_rng(seed)
    lo, hi = (normal[features].quantile(q).to_numpy(np.float64) for q in (0.01, 0.99))
    span = np.maximum(hi - lo, normal[features].std().to_numpy(np.float64))
    span = np.where(span > 0, span, 1.0)
    which = rng.integers(0, len(features), len(rows))
    up = rng.random(len(rows)) < 0.5
    out = rows.copy()
    values = np.where(up, hi[which] + PUSH * span[which], lo[which] - PUSH * span[which])
    for i, (j, v) in enumerate(zip(which, values)):
        out.iloc[i, out.columns.get_loc(features[j])] = v
    return out, which


def ranks(scores: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Per row, the rank (0 = first) of the planted feature in descending `scores`."""
    planted = scores[np.arange(len(which)), which]
    return (scores > planted[:, None]).sum(axis=1)


def job(config: str, name: str, path: str, seed: int) -> dict:
    """One run in a temporary project: the pipeline on the table, then planted rows explained."""
    import torch

    from aeops.cli import run_stage

    torch.set_num_threads(int(os.environ.get("AEOPS_BENCH_THREADS", "1")))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        params = tabular._run_params({"source": "table", "path": path, "anomaly_column": "is_anomaly",
                                      "normal_classes": None, "seed": seed}, config)
        Path("params.yaml").write_text(yaml.safe_dump(params))
        for stage in ("prepare", "tune", "train", "evaluate"):
            if run_stage(stage) != 0:
                return {"config": config, "set": name, "seed": seed, "error": f"{stage} failed"}
        seconds = time.perf_counter() - start
        return {"config": config, "set": name, "seed": seed, "seconds": round(seconds, 1),
                **_attribution(pd.read_csv(path), params, seed)}


def _attribution(table: pd.DataFrame, params: dict, seed: int) -> dict:
    from aeops.data.raw import raw_split
    from aeops.scoring.bundle import ModelBundle
    from aeops.scoring.scorer import Scorer

    scorer = Scorer(ModelBundle.load(params["evaluate"]["bundle_dir"]))
    features = scorer.explained
    raw, split = raw_split(params["prepare"]["output_dir"])
    rows = raw[np.asarray(split.is_anomaly) == 0].reset_index(drop=True)
    planted, which = plant(rows[scorer.features], table[table["is_anomaly"] == 0], features, seed)
    prep = scorer.preprocessor
    x = prep.scale(prep.rows(planted).raw).astype(np.float64)
    members = _members(scorer, x)
    share = scorer.explanations(x, members)
    rank = {"aeops": ranks(share, which), "z-score": ranks(np.abs(x), which)}
    speed = _speed(scorer, pd.concat([rows[scorer.features]] * (1000 // len(rows) + 1), ignore_index=True).head(1000))
    return {"rows": len(rows), "features": len(features),
            **{m: {"top1": round(float(np.mean(r == 0)), 4), "top3": round(float(np.mean(r < 3)), 4)} for m, r in rank.items()},
            "rows_per_s": speed}


def _members(scorer, x: np.ndarray) -> np.ndarray:
    import torch

    from aeops.models.ensemble import reconstruct_members

    with torch.no_grad():
        t = torch.from_numpy(x.astype(np.float32))
        if scorer.ensemble:
            return reconstruct_members(scorer.model, t).numpy()
        return scorer.model.reconstruct(t).numpy()[None]


def _speed(scorer, rows: pd.DataFrame) -> dict:
    """In-process rows/s on these rows, plain and with explain=3 (median of 5 after a warm-up)."""
    out = {}
    for key, k in (("plain", 0), ("explain_3", min(3, len(scorer.explained)))):
        scorer.score(rows, explain=k)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            scorer.score(rows, explain=k)
            times.append(time.perf_counter() - t)
        out[key] = round(len(rows) / statistics.median(times))
    return out


def summarize(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    configs = sorted({r["config"] for r in ok})
    overall = {}
    for c in configs:
        mine = [r for r in ok if r["config"] == c]
        overall[c] = {m: {k: round(statistics.mean(r[m][k] for r in mine), 4) for k in ("top1", "top3")}
                      for m in ("aeops", "z-score")}
        overall[c]["sets"] = len(mine)
        overall[c]["explain_cost"] = round(statistics.median(r["rows_per_s"]["plain"] / r["rows_per_s"]["explain_3"]
                                                             for r in mine), 2)
    return {"overall": overall, "errors": [r for r in runs if "error" in r]}


def markdown(runs: list[dict], summary: dict) -> str:
    lines = ["| set | features | planted rows | aeops top-1 / top-3 | z-score top-1 / top-3 | rows/s plain / explain 3 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in sorted((r for r in runs if "error" not in r), key=lambda r: (r["config"], r["set"])):
        a, z, s = r["aeops"], r["z-score"], r["rows_per_s"]
        tag = "" if r["config"] == "default" else f" ({r['config']})"
        lines.append(f"| {r['set']}{tag} | {r['features']} | {r['rows']} | {a['top1']:.3f} / {a['top3']:.3f} | "
                     f"{z['top1']:.3f} / {z['top3']:.3f} | {s['plain']:,} / {s['explain_3']:,} |")
    for c, o in summary["overall"].items():
        lines.append(f"| **mean of {o['sets']}** ({c}) | | | **{o['aeops']['top1']:.3f}** / {o['aeops']['top3']:.3f} | "
                     f"{o['z-score']['top1']:.3f} / {o['z-score']['top3']:.3f} | explain 3 costs ×{o['explain_cost']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=None, help="comma-separated table names (default: all)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--configs", default="default", help=f"comma-separated, of: {', '.join(CONFIGS)}")
    ap.add_argument("--tables", default=str(TABLES), help="a folder of CSV tables with an is_anomaly column")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    configs = args.configs.split(",")
    if unknown := [c for c in configs if c not in CONFIGS]:
        sys.exit(f"unknown config(s) {unknown}; known: {list(CONFIGS)}")
    found = {p.stem: p for p in sorted(Path(args.tables).glob("*.csv"))}
    if args.sets:
        found = {s: p for s, p in found.items() if s in args.sets.split(",")}
    if not found:
        sys.exit(f"explain benchmark skipped: no tables under {args.tables}")
    jobs = sorted(((c, s, str(p.resolve()), args.seed) for s, p in found.items() for c in configs),
                  key=lambda j: -Path(j[2]).stat().st_size)
    start = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs, max_tasks_per_child=1) as pool:
        for fut in as_completed([pool.submit(job, *j) for j in jobs]):
            r = fut.result()
            runs.append(r)
            done = r.get("error") or (f"top-1 aeops {r['aeops']['top1']:.3f}, z-score {r['z-score']['top1']:.3f} "
                                      f"({r['seconds']} s)")
            print(f"{r['config']:>9} {r['set']:>12}: {done}", flush=True)
            result = _write(args, runs, start, planned=len(jobs))  # after every run: a cut-short run keeps its sets
    print(result["table_md"])


def _write(args: argparse.Namespace, runs: list[dict], start: float, *, planned: int) -> dict:
    summary = summarize(runs)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "push": PUSH, "seed": args.seed,
              "wall_seconds": round(time.perf_counter() - start), "planned_runs": planned, **summary,
              "runs": sorted(runs, key=lambda r: (r["set"], r["config"]))}
    result["table_md"] = markdown(runs, summary)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    return result


if __name__ == "__main__":
    main()
