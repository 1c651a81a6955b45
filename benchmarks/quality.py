"""Benchmark: quality against classical baselines and published results, through the library's stages.

Every case runs aeops' own prepare → train → evaluate (temporary folder, its own MLflow store), so
the numbers are those a user gets from params. Parts (`--parts`):
- one_class: MNIST one-class protocol (normal = one digit, trained on that digit's training images,
  tested on all 10,000 test images): per-digit AUROC of the autoencoder vs PCA (same latent size),
  IsolationForest and kNN distance; published Deep SVDD mean 0.948 (Ruff et al. 2018).
- loo: digits leave-one-class-out (normal = the other nine digits), same baselines.
- curve: MNIST test MSE against PCA at latent sizes 2..64, kNN accuracy of codes, and
  rate–distortion (PSNR vs bits per pixel with 8-bit latents) against PCA and JPEG (Pillow).
Usage: python benchmarks/quality.py [--parts one_class loo curve] [--epochs 20] [--variants ...] (see --help)
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from aeops.variants import names as variant_names

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
OUT = ROOT / "benchmarks" / "results"
DEEP_SVDD_MEAN = 0.948
HINTON_2006 = {"latent": 30, "ae_sq_error_per_image": 3.00, "pca_sq_error_per_image": 13.87}
VARIANTS = variant_names()  # every registered variant
# One-class model: a small conv AE with a tight code reconstructs other digits worst (a wider one,
# channels [64, 128], fell to 0.91 mean AUROC). Contractive uses the JVP estimate (exact is ~10x slower).
ONE_CLASS_MODEL = {"architecture": "conv", "latent_dim": 16, "conv": {"channels": [32, 64]},
                   "contractive": {"estimator": "random_projection"}}
MLP = {"architecture": "mlp", "mlp": {"hidden": [512, 256]}}
METHODS = ("model", "pca", "isolation_forest", "knn_distance")


def train_config(epochs: int, batch: int, model: dict, out: str = "models", **kw: Any):
    from aeops.config import TrainConfig

    return TrainConfig(max_epochs=epochs, patience=epochs, batch_size=batch, accelerator="cpu",
                       progress_bar=False, model=model, output_dir=out, metrics_file=f"{out}/train.json", **kw)


def evaluate_config(model_dir: str = "models", smoothing: float = 0.0, top_fraction: float = 1.0):
    from aeops.config import EvaluateConfig

    tag = f"{model_dir}_s{smoothing}_t{top_fraction}"
    return EvaluateConfig(trustworthiness_max_rows=500, isolation_forest_trees=100, score_smoothing=smoothing,
                          score_top_fraction=top_fraction, model_dir=model_dir,
                          metrics_file=f"{tag}/evaluate.json", plots_dir=f"{tag}/plots")


def run_case(name: str, prepare_kw: dict, model: dict, epochs: int, batch: int = 128) -> dict[str, Any]:
    """prepare → train → evaluate in ./<name>; returns metrics/evaluate.json's content."""
    from aeops.config import MlflowConfig, PrepareConfig
    from aeops.data.prepare import prepare
    from aeops.evaluation.evaluate import evaluate
    from aeops.training.train import train

    case = Path(name)
    case.mkdir(parents=True, exist_ok=True)
    os.chdir(case)
    try:
        prepare(PrepareConfig(**prepare_kw))
        train(train_config(epochs, batch, model), MlflowConfig(experiment="quality"))
        return evaluate(evaluate_config(), MlflowConfig(experiment="quality"))
    finally:
        os.chdir("..")


def one_class_digit(digit: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One digit as the normal class: prepare once, then every variant; AUROC per method.

    The vanilla model is also scored by plain MSE (`*_plain_mse`), which isolates the scoring rule.
    """
    from aeops.config import MlflowConfig, PrepareConfig
    from aeops.data.prepare import prepare
    from aeops.evaluation.evaluate import evaluate
    from aeops.training.train import train

    mlflow_cfg = MlflowConfig(experiment="quality")
    case = Path(f"oc{digit}")
    case.mkdir(parents=True, exist_ok=True)
    os.chdir(case)
    try:
        prepare(PrepareConfig(source="mnist", path=str(MNIST), normal_classes=[digit], max_train_rows=args.rows))
        out: dict[str, dict[str, float]] = {}
        for variant in args.variants:
            start = time.perf_counter()
            model = {**ONE_CLASS_MODEL, "variant": variant}
            train(train_config(args.epochs, 128, model, out=variant, lr=args.lr), mlflow_cfg)
            r = evaluate(evaluate_config(variant, args.smoothing, args.top_fraction), mlflow_cfg)
            out[variant] = {m: r[m]["auroc"] for m in METHODS}
            if variant == "vanilla" and (args.smoothing, args.top_fraction) != (0, 1):
                for name, rule in (("plain_mse", (0.0, 1.0)), ("smoothing_only", (args.smoothing, 1.0))):
                    if rule != (args.smoothing, args.top_fraction):
                        e = evaluate(evaluate_config(variant, *rule), mlflow_cfg)
                        out[variant] |= {f"model_{name}": e["model"]["auroc"], f"pca_{name}": e["pca"]["auroc"]}
            print(f"  one_class digit {digit} {variant}: " + ", ".join(f"{m} {v:.4f}" for m, v in out[variant].items())
                  + f" ({time.perf_counter() - start:.0f} s)", flush=True)
        return out
    finally:
        os.chdir("..")


def one_class(args: argparse.Namespace) -> dict[str, Any]:
    per_digit = {d: one_class_digit(d, args) for d in args.digits}
    digits = list(per_digit)
    variants = {v: {"per_digit": {d: per_digit[d][v]["model"] for d in digits},
                    "mean": round(statistics.mean(per_digit[d][v]["model"] for d in digits), 4)}
                for v in args.variants}
    first = args.variants[0]

    def summary(variant: str, key: str) -> dict[str, Any]:
        values = {d: per_digit[d][variant][key] for d in digits}
        return {"per_digit": values, "mean": round(statistics.mean(values.values()), 4)}

    baselines = {m: summary(first, m) for m in METHODS[1:]}
    keys = [k for k in per_digit[digits[0]].get("vanilla", {}) if k.startswith(("model_", "pca_"))]
    ablation = {k.replace("model_", "vanilla_"): summary("vanilla", k) for k in keys}
    best = max(variants, key=lambda v: variants[v]["mean"])
    return {"variants": variants, "baselines": baselines, "scoring_rule_ablation": ablation, "best_variant": best,
            "deep_svdd_published_mean": DEEP_SVDD_MEAN, "model": ONE_CLASS_MODEL, "epochs": args.epochs,
            "lr": args.lr, "score_smoothing": args.smoothing, "score_top_fraction": args.top_fraction, "train_rows_per_digit": args.rows or "all (~5,000 after validation)"}


def leave_one_out(args: argparse.Namespace) -> dict[str, Any]:
    rows = {}
    for digit in range(10):
        normal = [d for d in range(10) if d != digit]
        r = run_case(f"loo{digit}", {"source": "digits", "normal_classes": normal},
                     {**MLP, "latent_dim": 16}, 60, 64)
        rows[digit] = {m: r[m]["auroc"] for m in METHODS}
    mean = {m: round(statistics.mean(r[m] for r in rows.values()), 4) for m in rows[0]}
    return {"per_held_out_digit": rows, "mean": mean, "model": {**MLP, "latent_dim": 16}, "epochs": 60}


def _jpeg_roundtrip(img: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """(bits, decoded image in [0, 1]) of one greyscale Pillow JPEG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return 8 * buf.tell(), np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float64) / 255


def jpeg_curve(x: np.ndarray, qualities=(1, 3, 5, 10, 20, 30, 50, 70, 90), tile: int = 32,
               per_row: int = 50) -> dict[str, list[dict[str, float]]]:
    """PSNR vs bits per pixel of Pillow JPEG on 28x28 images in [0, 1], two ways.

    `per_image`: each image its own file (headers, ~600 bytes, dominate: >= 3.8 bpp).
    `mosaic`: images padded to `tile`x`tile` (8x8-block aligned, so blocks never mix digits) and
    tiled `per_row` wide into one file; bits / (n·784): JPEG's coding without the header cost.
    """
    imgs = x.reshape(-1, 28, 28)
    n, pad = len(imgs), (tile - 28) // 2
    rows = -(-n // per_row)
    canvas = np.zeros((rows * tile, per_row * tile))
    for i, img in enumerate(imgs):
        r, c = divmod(i, per_row)
        canvas[r * tile + pad : r * tile + pad + 28, c * tile + pad : c * tile + pad + 28] = img
    out: dict[str, list[dict[str, float]]] = {"per_image": [], "mosaic": []}
    for q in qualities:
        bits, errs = 0, []
        for img in imgs:
            b, dec = _jpeg_roundtrip(img, q)
            bits += b
            errs.append(((dec - img) ** 2).mean())
        out["per_image"].append({"quality": q, "bits_per_pixel": bits / x.size,
                                 "psnr": 10 * np.log10(1 / np.mean(errs))})
        bits, dec = _jpeg_roundtrip(canvas, q)
        crops = np.stack([dec[(i // per_row) * tile + pad:][:28, (i % per_row) * tile + pad:][:, :28] for i in range(n)])
        mse = ((crops - imgs) ** 2).mean(axis=(1, 2)).mean()
        out["mosaic"].append({"quality": q, "bits_per_pixel": bits / x.size, "psnr": 10 * np.log10(1 / mse)})
    return out


def jpeg(args: argparse.Namespace) -> dict[str, Any]:
    from aeops.data.sources import load_idx_dir

    test = load_idx_dir(MNIST).test.x[: args.jpeg_rows] / 255.0
    return {**jpeg_curve(test), "test_images": len(test)}


def curve(args: argparse.Namespace) -> dict[str, Any]:
    points = []
    for latent in args.latents:
        r = run_case(f"curve{latent}", {"source": "mnist", "path": str(MNIST), "max_train_rows": args.curve_rows, "normal_classes": None},
                     {**MLP, "latent_dim": latent}, args.epochs, 128)
        m, p = r["model"], r["pca"]
        points.append({
            "latent": latent, "ae_mse": m["recon_mse"], "pca_mse": p["recon_mse"],
            "ae_over_pca": round(m["recon_mse"] / p["recon_mse"], 3),
            "ae_sq_error_per_image": m["recon_mse"] * 784, "pca_sq_error_per_image": p["recon_mse"] * 784,
            "ae_knn_accuracy": m["knn_accuracy"], "pca_knn_accuracy": p["knn_accuracy"],
            "bits_per_pixel": m["bits_per_value"], "ae_quantized_psnr": m["quantized_psnr"],
            "pca_quantized_psnr": p["quantized_psnr"],
        })
        print(f"  curve latent {latent}: AE MSE {m['recon_mse']:.5f} vs PCA {p['recon_mse']:.5f}", flush=True)
    return {"points": points, "hinton_2006": HINTON_2006,
            "train_rows": args.curve_rows, "epochs": args.epochs, "model": MLP}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    c = results["curve"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    lat = [p["latent"] for p in c["points"]]
    a.plot(lat, [p["ae_mse"] for p in c["points"]], "o-", label="autoencoder")
    a.plot(lat, [p["pca_mse"] for p in c["points"]], "s-", label="PCA")
    a.set(xscale="log", yscale="log", xlabel="latent size", ylabel="test MSE per pixel", title="MNIST reconstruction")
    a.set_xticks(lat, labels=[str(v) for v in lat])
    a.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    a.legend()
    b.plot([p["bits_per_pixel"] for p in c["points"]], [p["ae_quantized_psnr"] for p in c["points"]], "o-", label="AE, 8-bit codes")
    b.plot([p["bits_per_pixel"] for p in c["points"]], [p["pca_quantized_psnr"] for p in c["points"]], "s-", label="PCA, 8-bit codes")
    for key, label in (("mosaic", "JPEG, images tiled in one file"), ("per_image", "JPEG, one file per image")):
        j = results.get("jpeg", {}).get(key, [])
        b.plot([p["bits_per_pixel"] for p in j], [p["psnr"] for p in j], "^-" if key == "mosaic" else "v:", label=label)
    b.set(xscale="log", xlabel="bits per pixel", ylabel="PSNR (dB)", title="Rate–distortion, MNIST test")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def equal_rate(points: list[dict], jpeg_points: list[dict]) -> list[dict[str, Any]]:
    """AE and PCA (8-bit codes) against JPEG at the same bits per pixel.

    JPEG's PSNR is interpolated (linear in log bpp) between its measured qualities; None where the
    code's rate lies outside JPEG's measured range.
    """
    jb = np.log([j["bits_per_pixel"] for j in jpeg_points])
    jp = np.array([j["psnr"] for j in jpeg_points])
    order = np.argsort(jb)
    out = []
    for p in points:
        rate = np.log(p["bits_per_pixel"])
        inside = jb.min() <= rate <= jb.max()
        out.append({"latent": p["latent"], "bits_per_pixel": p["bits_per_pixel"], "ae_psnr": p["ae_quantized_psnr"],
                    "pca_psnr": p["pca_quantized_psnr"],
                    "jpeg_psnr": round(float(np.interp(rate, jb[order], jp[order])), 2) if inside else None})
    return out


PARTS = {"one_class": one_class, "loo": leave_one_out, "curve": curve, "jpeg": jpeg}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS),
                        help="a subset updates those parts of an existing quality.json")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3, help="one_class learning rate")
    parser.add_argument("--rows", type=int, default=None, help="cap on training images per digit (one_class)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="one_class variants")
    parser.add_argument("--smoothing", type=float, default=0.85, help="one_class evaluate.score_smoothing")
    parser.add_argument("--top-fraction", type=float, default=0.05, help="one_class evaluate.score_top_fraction")
    parser.add_argument("--curve-rows", type=int, default=60000, help="training images (curve)")
    parser.add_argument("--latents", nargs="+", type=int, default=[2, 4, 8, 16, 32, 64], help="curve latent sizes")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for quality.json and the plot")
    parser.add_argument("--jpeg-rows", type=int, default=1000, help="test images for the JPEG curve")
    parser.add_argument("--digits", nargs="+", type=int, default=list(range(10)), help="one_class normal digits")
    args = parser.parse_args()
    if any(p != "loo" for p in args.parts) and not MNIST.is_dir():
        raise SystemExit(f"MNIST IDX files expected in {MNIST}; run with --parts loo without them")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    from aeops.io import write_json

    path = args.out / "quality.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() and set(args.parts) != set(PARTS) else {}
    results |= {"benchmark": "quality", "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    results.setdefault("seconds", {})
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        for part in args.parts:
            start = time.perf_counter()
            results[part] = PARTS[part](args)
            results["seconds"][part] = round(time.perf_counter() - start)
    if "curve" in results and "jpeg" in results:
        results["rate_distortion"] = equal_rate(results["curve"]["points"], results["jpeg"]["mosaic"])
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(path, results)
    if "curve" in results:
        plot(results, args.out / "quality_curves.png")
    if "one_class" in results:
        oc = results["one_class"]
        print("one_class mean AUROC: " + ", ".join(f"{v} {r['mean']:.4f}" for v, r in oc["variants"].items())
              + "; " + ", ".join(f"{m} {r['mean']:.4f}" for m, r in {**oc["baselines"], **oc["scoring_rule_ablation"]}.items()))
    if "loo" in results:
        print("loo mean AUROC: " + ", ".join(f"{m} {v:.4f}" for m, v in results["loo"]["mean"].items()))
    for r in results.get("rate_distortion", []):
        print(f"rate-distortion z{r['latent']} at {r['bits_per_pixel']:.3f} bpp: AE {r['ae_psnr']:.2f} dB, "
              f"PCA {r['pca_psnr']:.2f} dB, JPEG {r['jpeg_psnr']} dB")
    print(f"seconds per part {results['seconds']} → {path}")


if __name__ == "__main__":
    main()
