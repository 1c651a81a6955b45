"""Write benchmarks/results/SUMMARY.md: one Markdown page from every results/*.json present.

`make bench` runs it last; a benchmark whose JSON is missing is listed as not run.
Usage: python benchmarks/summarize.py [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), ""]


def speed(d: dict) -> list[str]:
    out = [f"## Training speed ({d['data']}, batch {d['batch']}, median of {d['repeats']})", ""]
    devices = [("CPU", d)] + ([(f"GPU {d['gpu']['device']}", d["gpu"])] if "gpu" in d else [])
    rows = [[dev, name, m["raw_epoch_s"], m["lightning_epoch_s"], m["lightning_over_raw"],
             m["achieved_gflops"], f"{m['hardware_use']:.0%} of {r['matmul_gflops']}"]
            for dev, r in devices for name, m in r["models"].items()]
    return out + _table(["device", "model", "raw loop epoch (s)", "Lightning epoch (s)", "Lightning / raw",
                         "achieved GFLOP/s", "of dense fp32 matmul GFLOP/s"], rows)


def pipeline(d: dict) -> list[str]:
    stages = d["stage_seconds"]
    return ["## Pipeline (default `dvc repro` from clean)", "",
            *_table([*stages, "total", "no-op repro"], [[*stages.values(), d["total_seconds"], d["noop_repro_seconds"]]])]


def serving(d: dict) -> list[str]:
    rows = [["in-process pyfunc, batch 1,000", f"{d['in_process_rows_per_s']:,} rows/s"]]
    for workers, r in (d.get("workers") or {"1": d}).items():
        load = r["load"]
        rows += [[f"{workers} worker(s): REST 1 row", f"p50 {r['rest_1_rows']['p50_ms']} ms, p99 {r['rest_1_rows']['p99_ms']} ms"],
                 [f"{workers} worker(s): REST 1,000 rows",
                  f"p50 {r['rest_1000_rows']['p50_ms']} ms, p99 {r['rest_1000_rows']['p99_ms']} ms"],
                 [f"{workers} worker(s): load, {load['clients']} clients, {load['requests']} requests",
                  f"{load['errors']} errors, p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, {load['requests_per_s']} req/s"]]
    return ["## Serving", "", *_table(["measure", "value"], rows)]


def tune_pruning(d: dict) -> list[str]:
    rows = [[r["pruner"], "/".join(str(r["trials"][k]) for k in ("COMPLETE", "PRUNED", "FAIL")), r["epochs"],
             r["epochs_vs_none"], r["wall_s"], f"{r['best']:.5f}"] for r in d["rows"]]
    return [f"## Pruning ({d['trials']} trials × {d['epochs_per_trial']} epochs, {d['data']})", "",
            *_table(["pruner", "complete/pruned/failed", "epochs", "vs none", "wall (s)", "best val MSE"], rows)]


def quality(d: dict) -> list[str]:
    out: list[str] = []
    if oc := d.get("one_class"):
        cols = {**oc["variants"], **oc["baselines"], **oc.get("scoring_rule_ablation", {})}
        digits = sorted(next(iter(cols.values()))["per_digit"], key=int)
        rows = [[d_, *(f"{c['per_digit'][d_]:.4f}" for c in cols.values())] for d_ in digits]
        rows.append(["**mean**", *(f"**{c['mean']:.4f}**" for c in cols.values())])
        out += [f"## MNIST one-class AUROC (best: {oc['best_variant']}; Deep SVDD published "
                f"{oc['deep_svdd_published_mean']}; smoothing {oc['score_smoothing']}, top fraction "
                f"{oc.get('score_top_fraction', 1.0)}, {oc['epochs']} epochs)", "",
                *_table(["digit", *cols], rows)]
    if loo := d.get("loo"):
        out += ["## Digits leave-one-class-out, mean AUROC", "",
                *_table(list(loo["mean"]), [[f"{v:.4f}" for v in loo["mean"].values()]])]
    if curve := d.get("curve"):
        rows = [[p["latent"], f"{p['ae_mse']:.5f}", f"{p['pca_mse']:.5f}", p["ae_over_pca"],
                 p["ae_knn_accuracy"], p["pca_knn_accuracy"]] for p in curve["points"]]
        out += [f"## MNIST reconstruction ({curve['train_rows']} training images, {curve['epochs']} epochs)", "",
                *_table(["latent", "AE MSE", "PCA MSE", "AE / PCA", "kNN acc AE", "kNN acc PCA"], rows)]
    if rd := d.get("rate_distortion"):
        rows = [[r["latent"], f"{r['bits_per_pixel']:.3f}", f"{r['ae_psnr']:.2f}", f"{r['pca_psnr']:.2f}",
                 "outside JPEG's range" if r["jpeg_psnr"] is None else r["jpeg_psnr"]] for r in rd]
        out += ["## Rate–distortion, 8-bit codes vs JPEG (tiled, no header cost) at equal bpp", "",
                *_table(["latent", "bits/pixel", "AE PSNR", "PCA PSNR", "JPEG PSNR"], rows)]
    return out


def tabular(d: dict) -> list[str]:
    return [f"## Tabular anomaly detection ({len(d['configs'])} config(s), {d['splits']} seeded splits per set)", "",
            d["table_md"], ""]


def monitoring(d: dict) -> list[str]:
    s = d["settings"]
    return [f"## Monitoring ({s['batches']} clean and {s['shifted']} shifted batches of {s['rows']} rows per set)", "",
            d["table_md"], ""]


def compression(d: dict) -> list[str]:
    m = d["meta"]
    lines = [f"## Compression (`aeops compress` vs JPEG and WebP; {m['epochs']} epochs per model, {m['seconds']} s)", ""]
    return lines + [line for name in ("mnist", "photos") if name in d for line in (d[name]["table_md"], "")]


def image_memory(d: dict) -> list[str]:
    sizes = list(d["folders"])
    heads = [f"{what} {int(n):,} images" for what in ("anonymous", "RSS") for n in sizes]

    def rows(r: dict) -> list[list]:
        return [[stage, *(f"{r['folders'][n]['stages'][stage][k]:,.0f}" for k in ("peak_anon_mb", "peak_rss_mb")
                          for n in sizes), ratio["peak_anon_mb"], ratio["peak_rss_mb"]]
                for stage, ratio in r["large_over_small"].items()]

    decoded = ", ".join(f"{int(n):,} images = {d['folders'][n]['decoded_mb']:,.0f} MB" for n in sizes)
    out = [f"## Image-folder memory (peak MB; {d['image_shape']} images, decoded uint8: {decoded})", ""]
    for r in (d, d.get("before")):
        if r:
            out += _table([f"aeops {r['aeops_commit']}", *heads, "large / small anonymous", "large / small RSS"], rows(r))
    return out


def table_memory(d: dict) -> list[str]:
    sizes = list(d["tables"])
    heads = [f"{what} {int(n):,} rows" for what in ("anonymous", "RSS", "seconds") for n in sizes]

    def rows(r: dict) -> list[list]:
        return [[stage, *(f"{r['tables'][n]['stages'][stage][k]:,.0f}" for k in ("peak_anon_mb", "peak_rss_mb")
                          for n in sizes), *(r["tables"][n]["stages"][stage]["seconds"] for n in sizes),
                 ratio["peak_anon_mb"], ratio["peak_rss_mb"]] for stage, ratio in r["large_over_small"].items()]

    out = [f"## Table memory (peak MB; {d['columns']} columns, {d['format']})", ""]
    for r in (d, *d.get("compared", [])):
        cap = "max_rows default" if r.get("max_rows") is None else f"max_rows {r['max_rows']:,}"
        out += _table([f"aeops {r['aeops_commit']}, {cap}", *heads, "large / small anonymous", "large / small RSS"], rows(r))
    return out


def mixed(d: dict) -> list[str]:
    what = f"{len(d['tables'])} numeric tables made messy" + (" and the 2 real mixed tables" if d["mixed"] else "")
    splits = f"{d['splits']} split" + ("s" if d["splits"] != 1 else "")
    return [f"## Mixed-type and messy tables ({what}, {splits}, AUROC)", "", d["table_md"]]


def unlabelled(d: dict) -> list[str]:
    return [f"## No labels, anomalies inside ({len(d['complete_sets'])} tables, {d['splits']} split(s), "
            f"{d['train_share']:.0%} of all rows for training)", "", d["table_md"]]


def explain(d: dict) -> list[str]:
    return [f"## Attribution: one feature pushed {d['push']} spans beyond its usual range, is it named first?", "",
            d["table_md"]]


def localisation(d: dict) -> list[str]:
    return [f"## Localisation: textures, {d['size']}×{d['size']} crops with planted defects (pixel AUROC, AUPRO)", "",
            d["table_md"]]


SECTIONS = {"training_speed": speed, "pipeline": pipeline, "serving": serving, "tune_pruning": tune_pruning,
            "quality": quality, "tabular": tabular, "monitoring": monitoring, "compression": compression,
            "image_memory": image_memory, "table_memory": table_memory, "mixed": mixed, "unlabelled": unlabelled,
            "explain": explain, "localisation": localisation}


def summarize(results: Path) -> str:
    lines = ["# Benchmark summary", ""]
    for name, section in SECTIONS.items():
        path = results / f"{name}.json"
        if not path.exists():
            lines += [f"## {name}", "", "not run (no results file)", ""]
            continue
        data = json.loads(path.read_text())
        lines += [f"<!-- {name}: {data.get('machine', '?')} -->", *section(data)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    from aeops.io import atomic_path

    with atomic_path(args.results / "SUMMARY.md") as tmp:
        tmp.write_text(summarize(args.results))
    print(f"wrote {args.results / 'SUMMARY.md'}")


if __name__ == "__main__":
    main()
