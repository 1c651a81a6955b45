"""Benchmark: anomaly detection on the shared tabular sets, the default pipeline vs classical baselines.

Every set in ../shared/datasets/tabular (CSV with a 0/1 `is_anomaly` column) runs through the real
stages (prepare → tune → train → evaluate) with params.yaml's defaults; only the data settings change
(`source: table`, `anomaly_column: is_anomaly`, no normal_classes) and the split seed (`--splits`
seeds). PCA, IsolationForest and kNN distance come from the same evaluate, on the same splits.
Options that change training (`--configs`) rerun the pipeline; scoring options are evaluate reruns on
the same trained model: the residual alone, the residual always fused with kNN distance, standardised
residuals, and `auto` with the kNN weight 1 only (the previous default). `--keep DIR` keeps each run's
data, checkpoints and bundle; `--rescore DIR` evaluates those kept runs again with today's evaluate code
(minutes, not hours), refused where training params changed.
Results: results/tabular.json (every run) and a Markdown table (mean ± std over splits, wins per set).
Usage: python benchmarks/tabular.py [--sets breastw,wbc] [--splits 5] [--jobs 2] [--configs default,...]
       [--keep DIR | --rescore DIR]
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
TABLES = ROOT.parent / "shared" / "datasets" / "tabular"
OUT = ROOT / "benchmarks" / "results" / "tabular.json"
BASELINES = ("knn_distance", "isolation_forest", "pca")
# scoring options (evaluate settings), rescored on the default run's model: the residual alone, always fused
# with the kNN distance (robust z-sum, as `score_neighbors: true`), standardised residuals, and `auto` choosing
# between the residual and the 1:1 sum only (the default tries the kNN weights 1, 2 and 4)
SCORING: dict[str, dict[str, object]] = {
    "residual alone": {"score_neighbors": False},
    "residual + kNN distance": {"score_neighbors": True},
    "standardised residual": {"score_neighbors": False, "score_standardize": True},
    "auto, kNN weight 1 only": {"knn_weights": [1.0]},  # the previous default: fused 1:1 or the residual alone
}
OPTIONS = tuple(SCORING)
# Options that change training: each reruns the whole pipeline (dotted params keys).
CONFIGS: dict[str, dict[str, object]] = {
    "default": {},
    "objective val_recon_loss": {"tune.objective": "val_recon_loss"},
    "objective val_synthetic_auroc": {"tune.objective": "val_synthetic_auroc"},
    "single network": {"train.ensemble": 1},
    "ensemble 5": {"train.ensemble": 5},
    "robust scaling": {"prepare.scaling": "robust"},
    "plain epochs": {"train.min_epoch_rows": 0, "train.max_epoch_rows": None, "tune.min_epoch_rows": 0},
}


def _set(params: dict, dotted: str, value: object) -> None:
    *parents, key = dotted.split(".")
    node = params
    for p in parents:
        node = node[p]
    node[key] = value


def _run_params(data: dict, config: str = "default") -> dict:
    """Today's params.yaml with one run's data settings (prepare: source, path, ...) and its config's changes."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"].update(data)
    params["tune"]["progress_bar"] = params["train"]["progress_bar"] = False
    for key, value in CONFIGS[config].items():
        _set(params, key, value)
    return params


def _copy_kept(src: Path, dst: Path) -> None:
    """Copy the KEPT files and folders that exist under src to dst (replacing what dst held)."""
    import shutil

    for name in filter(lambda n: (src / n).exists(), KEPT):
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (src / name).is_dir() else shutil.copy2)(src / name, dst / name)


def job(config: str, table: str, seed: int, tables: str = str(TABLES), keep: str | None = None,
        options: tuple[str, ...] = OPTIONS) -> dict:
    """One pipeline run in a temporary project folder; returns AUROC/AUPRC of the model, options and baselines.

    With `keep`, the run's params, prepared splits, models, bundle and metrics are copied to
    keep/<config>/<set>/<seed>: later scoring ideas can be tried on the same trained networks in minutes.
    """
    import shutil

    import torch

    from aeops.cli import run_stage

    torch.set_num_threads(int(os.environ.get("AEOPS_BENCH_THREADS", "1")))
    params = _run_params({"source": "table", "path": str(Path(tables) / f"{table}.csv"),
                          "anomaly_column": "is_anomaly", "normal_classes": None, "seed": seed}, config)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        Path("params.yaml").write_text(yaml.safe_dump(params))
        for stage in ("prepare", "tune", "train", "evaluate"):
            if run_stage(stage) != 0:
                return {"config": config, "set": table, "seed": seed, "error": f"{stage} failed"}
        seconds = time.perf_counter() - start
        if keep:  # before the scoring options rewrite params.yaml
            dst = Path(keep) / config.replace(" ", "_") / table / str(seed)
            shutil.rmtree(dst, ignore_errors=True)
            _copy_kept(Path("."), dst)
            (dst / "seconds").write_text(f"{seconds:.1f}")
        return _record(config, table, seed, params, seconds, options)


KEPT = ("params.yaml", "data/prepared", "models", "bundle", "metrics", "tune/best_params.json")


def _record(config: str, table: str, seed: int, params: dict, seconds: float,
            options: tuple[str, ...] = OPTIONS) -> dict:
    """The finished run in the current folder: AUROC/AUPRC of the model, the baselines and (default) the options."""
    record = json.loads(Path("metrics/evaluate.json").read_text())
    best = json.loads(Path("tune/best_params.json").read_text()) if params["tune"]["enabled"] else {}
    out = {"config": config, "set": table, "seed": seed, "seconds": round(seconds, 1),
           "model": _keep(record["model"]), **{b: _keep(record[b]) for b in BASELINES},
           "latent_dim": record["model"]["latent_dim"], "variant": best.get("train", {}).get("model", {}).get("variant"),
           "score_choice": record["model"].get("score_choice"), "knn_weight": record["model"].get("score_knn_weight")}
    if config == "default":
        out |= _scoring_options(params, record, options)
    return out


def rescore(kept: str, table: str, seed: int, options: tuple[str, ...] = OPTIONS) -> dict:
    """A kept default run (`--keep`) evaluated again with today's evaluate code and params: no retraining.

    Refused where any other section of params.yaml differs from the kept run's: the trained network
    would not be the one today's pipeline trains, and the numbers would be silently stale.
    """
    import torch

    from aeops.cli import run_stage

    torch.set_num_threads(int(os.environ.get("AEOPS_BENCH_THREADS", "1")))
    src = Path(kept) / "default" / table / str(seed)
    params, stale = _rescore_params(src)
    if stale:
        raise SystemExit(f"{src}: params section(s) {stale} differ from today's params.yaml; rerun the pipeline instead")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        _copy_kept(src, Path("."))
        Path("params.yaml").write_text(yaml.safe_dump(params))
        _fresh_mlflow_run(params)
        if run_stage("evaluate") != 0:
            return {"config": "default", "set": table, "seed": seed, "error": "evaluate failed"}
        return _record("default", table, seed, params, float((src / "seconds").read_text()), options)


def _rescore_params(src: Path) -> tuple[dict, list[str]]:
    """Today's params.yaml with the kept run's data settings, and the sections (other than evaluate and
    after) where the kept run's params differ: its network would not be the one today's pipeline trains."""
    old = yaml.safe_load((src / "params.yaml").read_text())
    params = _run_params({k: old["prepare"][k] for k in ("source", "path", "anomaly_column", "normal_classes", "seed")})
    return params, [k for k in params if k not in ("evaluate", "register", "monitor", "mlflow") and params[k] != old.get(k)]


def _fresh_mlflow_run(params: dict) -> None:
    """The kept run's MLflow store is not kept: evaluate logs to a new run in this folder's store instead."""
    import mlflow

    from aeops.config import parse_section
    from aeops.tracking import setup_experiment

    experiment = setup_experiment(parse_section("mlflow", params.get("mlflow")))
    with mlflow.start_run(experiment_id=experiment) as run:
        pass
    info = json.loads(Path("models/run.json").read_text())
    Path("models/run.json").write_text(json.dumps({**info, "run_id": run.info.run_id}))


def _keep(m: dict) -> dict:
    return {"auroc": m["auroc"], "auprc": m["auprc"]}


def _scoring_options(params: dict, record: dict, options: tuple[str, ...] = OPTIONS) -> dict:
    """The same trained model scored by other rules: each is a rerun of `evaluate` with one setting changed."""
    from aeops.cli import run_stage

    out = {}
    for option, change in ((o, SCORING[o]) for o in options):
        ev = {**params["evaluate"], **change, "metrics_file": "metrics/option.json", "bundle_dir": "bundle_option",
              "plots_dir": "plots/option"}
        Path("params.yaml").write_text(yaml.safe_dump({**params, "evaluate": ev}))
        if run_stage("evaluate") != 0:
            raise RuntimeError(f"evaluate failed for the option {option!r}")
        model = json.loads(Path("metrics/option.json").read_text())["model"]
        same_rule = set(change) == {"score_neighbors"} and all(
            model.get(k) == record["model"].get(k) for k in ("score_neighbors", "score_knn_weight"))
        if same_rule and model["auroc"] != record["model"]["auroc"]:
            raise RuntimeError(f"{option!r} uses the default's rule but scores {model['auroc']} vs {record['model']['auroc']}")
        out[option] = _keep(model)
    return out


def summarize(runs: list[dict]) -> dict:
    """Per set and overall: mean ± std AUROC/AUPRC of each method, and sets won against each baseline."""
    methods: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in runs:
        if "error" in r:
            continue
        name = "aeops" if r["config"] == "default" else f"aeops ({r['config']})"
        entries = {name: r["model"]}
        if r["config"] == "default":
            entries |= {f"aeops, {o}": r[o] for o in OPTIONS if r.get(o)}
            entries |= {b: r[b] for b in BASELINES}
        for method, m in entries.items():
            for metric in ("auroc", "auprc"):
                methods.setdefault(method, {}).setdefault(r["set"], {}).setdefault(metric, []).append(m[metric])
    table = {}
    for method, sets in methods.items():
        per_set = {s: {k: (statistics.mean(v), statistics.pstdev(v), len(v)) for k, v in m.items()} for s, m in sets.items()}
        table[method] = {
            "per_set": per_set,
            "mean_auroc": statistics.mean(v["auroc"][0] for v in per_set.values()),
            "mean_auprc": statistics.mean(v["auprc"][0] for v in per_set.values()),
            "sets": len(per_set),
        }
    ref = table.get("aeops", {}).get("per_set", {})
    for entry in table.values():  # sets where the default pipeline beats this method (mean AUROC)
        common = [s for s in entry["per_set"] if s in ref]
        entry["aeops_wins"] = sum(ref[s]["auroc"][0] > entry["per_set"][s]["auroc"][0] + 5e-4 for s in common)
        entry["aeops_ties"] = sum(abs(ref[s]["auroc"][0] - entry["per_set"][s]["auroc"][0]) <= 5e-4 for s in common)
    for config in {r["config"] for r in runs if "error" not in r} - {"default"}:
        table[f"aeops ({config})"] |= paired(runs, config)
    weights = [r["knn_weight"] for r in runs if r["config"] == "default" and r.get("knn_weight") is not None]
    if weights and "aeops" in table:  # what `auto` chose: 0 = the residual alone, else the kNN term's weight
        table["aeops"]["knn_weight_runs"] = {f"{w:g}": weights.count(w) for w in sorted(set(weights))}
    return table


def paired(runs: list[dict], config: str) -> dict:
    """A training config against the default on exactly the same (set, split) pairs: unlike splits never meet."""
    keyed = {(r["config"], r["set"], r["seed"]): r for r in runs if "error" not in r}
    pairs = [(keyed[k], keyed[("default", *k[1:])]) for k in keyed if k[0] == config and ("default", *k[1:]) in keyed]
    per_set: dict[str, list[tuple[float, float]]] = {}
    for c, d in pairs:
        per_set.setdefault(c["set"], []).append((c["model"]["auroc"], d["model"]["auroc"]))
    means = {s: (statistics.mean(a for a, _ in v), statistics.mean(b for _, b in v)) for s, v in per_set.items()}
    return {"paired_sets": len(means), "paired_splits": len(pairs),
            "paired_mean_auroc": statistics.mean(a for a, _ in means.values()) if means else None,
            "paired_default_auroc": statistics.mean(b for _, b in means.values()) if means else None,
            "paired_config_wins": sum(a > b + 5e-4 for a, b in means.values()),
            "paired_default_wins": sum(b > a + 5e-4 for a, b in means.values())}


def markdown(table: dict, splits: int) -> str:
    rows = sorted(table.items(), key=lambda kv: -kv[1]["mean_auroc"])
    lines = [f"| method | mean AUROC | mean AUPRC | sets aeops (default) wins / ties (of {len(rows[0][1]['per_set'])}) |",
             "| --- | --- | --- | --- |"]
    for method, e in rows:
        if "paired_sets" in e:  # a training config: only against the default on its own splits (below)
            continue
        wins = "—" if method == "aeops" else f"{e['aeops_wins']} / {e['aeops_ties']}"
        lines.append(f"| {method} | {e['mean_auroc']:.3f} | {e['mean_auprc']:.3f} | {wins} |")
    configs = [(m, e) for m, e in rows if e.get("paired_sets")]
    if configs:
        lines += ["", "Training configs against the default on the same splits (AUROC, mean over sets):", "",
                  "| config | its AUROC | default's | sets it wins / loses | sets (splits) |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {m} | {e['paired_mean_auroc']:.3f} | {e['paired_default_auroc']:.3f} | {e['paired_config_wins']} / "
                  f"{e['paired_default_wins']} | {e['paired_sets']} ({e['paired_splits']}) |" for m, e in configs]
    if table.get("aeops", {}).get("knn_weight_runs"):
        chosen = ", ".join(f"{w}: {n}" for w, n in table["aeops"]["knn_weight_runs"].items())
        lines += ["", f"The kNN term's weight `auto` chose, runs per weight (0 = the residual alone): {chosen}."]
    sets = sorted(next(iter(table.values()))["per_set"])
    shown = [m for m, _ in rows if m in ("aeops", *BASELINES)]
    over = f"mean ± std over {splits} splits" if splits > 1 else "one split"
    lines += ["", f"Per set, AUROC, {over}:", "",
              "| set | " + " | ".join(shown) + " |", "| --- |" + " --- |" * len(shown)]
    for s in sets:
        cells = []
        for m in shown:
            v = table[m]["per_set"].get(s, {}).get("auroc")
            short = "" if v is None or v[2] == splits else f" ({v[2]} split{'s' if v[2] > 1 else ''})"
            spread = f" ± {v[1]:.3f}" if splits > 1 and v is not None else ""
            cells.append("—" if v is None else f"{v[0]:.3f}{spread}{short}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=None, help="comma-separated set names (default: every CSV in the folder)")
    ap.add_argument("--splits", type=int, default=5, help="seeded splits per set")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="pipeline runs in parallel")
    ap.add_argument("--configs", default="default", help=f"comma-separated, of: {', '.join(CONFIGS)}; 'all'")
    ap.add_argument("--options", default="all", help=f"scoring options rerun on each default run, comma-separated, "
                    f"of: {', '.join(OPTIONS)}; 'all' (default) or 'none'")
    ap.add_argument("--tables", type=Path, default=TABLES, help="folder of CSV files with a 0/1 is_anomaly column")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--runs", default=None, help="JSON-lines file of finished runs, appended as each ends "
                    "(default: the --out file with .jsonl, started afresh)")
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --runs and run only the missing "
                    "ones (only after no code or params change: a stale run would be counted silently)")
    ap.add_argument("--keep", default=None, help="copy each run's data, models and bundle under this folder "
                    "(<config>/<set>/<seed>) for later rescoring")
    ap.add_argument("--rescore", default=None, help="a --keep folder: evaluate its default runs again with today's "
                    "evaluate code and params instead of rerunning the pipeline (refused where other params changed)")
    ap.add_argument("--summary-only", action="store_true", help="run nothing: summarise the runs already in --runs "
                    "(e.g. after separate invocations gave small sets more splits than large ones)")
    args = ap.parse_args()
    if not args.tables.is_dir():
        sys.exit(f"tabular benchmark skipped: {args.tables} not found (the shared tabular sets)")
    sets = args.sets.split(",") if args.sets else sorted(p.stem for p in args.tables.glob("*.csv"))
    configs = list(CONFIGS) if args.configs == "all" else args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        sys.exit(f"unknown config(s) {unknown}; known: {list(CONFIGS)}")
    options = OPTIONS if args.options == "all" else () if args.options == "none" else tuple(args.options.split(","))
    if unknown := [o for o in options if o not in OPTIONS]:
        sys.exit(f"unknown scoring option(s) {unknown}; known: {list(OPTIONS)}, or 'all' or 'none'")
    log = Path(args.runs or Path(args.out).with_suffix(".jsonl"))
    if not (args.resume or args.summary_only):
        log.unlink(missing_ok=True)
    old = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    done_keys = {(r["config"], r["set"], r["seed"]) for r in old if "error" not in r}
    wanted = [(c, s, seed) for c in configs for s in sets for seed in range(args.splits)]
    jobs = [] if args.summary_only else [j for j in wanted if j not in done_keys]
    if args.rescore:
        if configs != ["default"]:
            sys.exit("--rescore re-evaluates kept default runs only; leave --configs at default")
        missing = [j for j in jobs if not (Path(args.rescore) / "default" / j[1] / str(j[2])).is_dir()]
        if missing:
            sys.exit(f"--rescore: no kept run for {len(missing)} of {len(jobs)} (e.g. {missing[0][1]} split {missing[0][2]})")
        for j in jobs:  # before any work: a stale kept run would be counted silently
            src = Path(args.rescore) / "default" / j[1] / str(j[2])
            stale = _rescore_params(src)[1]
            if stale:
                sys.exit(f"{src}: params section(s) {stale} differ from today's params.yaml; rerun the pipeline instead")
    # the default config first, then set by set (big sets first, packing is tight) with every config of a set
    # together: a run cut short still compares configs on the sets it finished
    jobs.sort(key=lambda j: (j[0] != "default", -(args.tables / f"{j[1]}.csv").stat().st_size, configs.index(j[0])))
    print(f"{len(wanted) - len(jobs)} of {len(wanted)} runs already in {log}; running {len(jobs)}", flush=True)
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=args.jobs, max_tasks_per_child=1) as pool:
        submitted = [pool.submit(rescore, args.rescore, *j[1:], options) if args.rescore else
                     pool.submit(job, *j, str(args.tables), args.keep, options) for j in jobs]
        for fut in as_completed(submitted):
            r = fut.result()
            with log.open("a") as fh:
                fh.write(json.dumps(r) + "\n")
            done = r.get("error") or f"AUROC {r['model']['auroc']:.3f} (kNN {r['knn_distance']['auroc']:.3f}), {r['seconds']} s"
            print(f"{r['config']:>24} {r['set']:>12} split {r['seed']}: {done}", flush=True)
    keys = set(wanted)
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    runs = list({(r["config"], r["set"], r["seed"]): r for r in runs
                 if (r["config"], r["set"], r["seed"]) in keys and "error" not in r}.values())  # the last of each
    table = summarize(runs)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "splits": args.splits, "configs": configs,
              "wall_seconds": round(time.perf_counter() - start, 1), "summary": table,
              "table_md": markdown(table, args.splits), "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(result["table_md"])


if __name__ == "__main__":
    main()
