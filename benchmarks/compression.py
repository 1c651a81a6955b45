"""Benchmark: `aeops compress` against JPEG and WebP (Pillow), from real files, on MNIST and on photo crops.

For each set it trains conv autoencoders with aeops' own prepare → train (params defaults except
`architecture: conv`, the latent size, `ensemble: 1` and the epoch cap), builds the model bundle
with its latent prior as `evaluate` does, then compresses the test images (a folder of PNGs) with
`aeops.compression` at several `--error` settings and decompresses them. JPEG and WebP encode every
test image as its own file over a range of qualities. Reported per point: bits per pixel from the
files' sizes (the .aez header included), mean per-image PSNR, mean MS-SSIM (torchmetrics; 3 scales,
3×3 window: 28- and 32-pixel images are too small for the usual 5 scales and 11×11), and encode /
decode images per second (one process, files on disk). At equal rates: JPEG's and WebP's PSNR
interpolated at each aeops point's bpp, and the bpp they need for its PSNR.
Sets:
- mnist: trained on `--train-rows` MNIST training images, tested on the first `--test-images` of t10k;
- photos: 32×32 RGB crops of scikit-learn's two bundled photos (china.jpg, flower.jpg): random
  training crops from the top three quarters of each, test tiles from the bottom quarter (unseen pixels).
Usage: python benchmarks/compression.py [--sets mnist photos] [--epochs 30] [--latents 16 32 64] (see --help)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
OUT = ROOT / "benchmarks" / "results"
ERRORS = (1.0, 2.0, 4.0, 8.0)  # --error, gray levels RMS
QUALITIES = (1, 5, 10, 20, 30, 50, 70, 90)
LATENTS = {"mnist": (8, 16, 32, 64, 128), "photos": (32, 64, 128)}
CROP = 32


def _save(folder: Path, images: np.ndarray) -> list[Path]:
    """(n, h, w) or (n, h, w, 3) uint8 → PNG files."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.png" for i in range(len(images))]
    for path, img in zip(paths, images):
        Image.fromarray(img).save(path)
    return paths


def mnist_sets(args: argparse.Namespace, work: Path) -> tuple[dict, np.ndarray]:
    from aeops.data.sources import load_idx_dir

    data = load_idx_dir(MNIST)
    train = data.x[: args.train_rows].reshape(-1, 28, 28).astype(np.uint8)
    _save(work / "train" / "0", train)
    test = data.test.x[: args.test_images].reshape(-1, 28, 28).astype(np.uint8)
    return {"source": "image_folder", "path": str(work / "train")}, test


def photo_sets(args: argparse.Namespace, work: Path) -> tuple[dict, np.ndarray]:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    crops, tiles = [], []
    for img in load_sample_images().images:  # (427, 640, 3) each
        cut = img.shape[0] * 3 // 4
        ys, xs = rng.integers(0, cut - CROP, args.photo_crops // 2), rng.integers(0, img.shape[1] - CROP, args.photo_crops // 2)
        crops += [img[y:y + CROP, x:x + CROP] for y, x in zip(ys, xs)]
        tiles += [img[y:y + CROP, x:x + CROP] for y in range(cut, img.shape[0] - CROP + 1, CROP)
                  for x in range(0, img.shape[1] - CROP + 1, CROP)]
    _save(work / "train" / "0", np.stack(crops))
    return {"source": "image_folder", "path": str(work / "train")}, np.stack(tiles)


def train_codec(name: str, prepare_kw: dict, latent: int, args: argparse.Namespace) -> tuple[Path, float]:
    """prepare → train a conv AE of this latent size → bundle with prior; returns its folder and fit seconds."""
    from dataclasses import replace

    from aeops.compression.prior import build_prior
    from aeops.config import MlflowConfig, PrepareConfig, TrainConfig
    from aeops.data.prepare import prepare
    from aeops.data.prepared import load_scaler, load_split
    from aeops.evaluation.evaluate import encode_decode
    from aeops.scoring.bundle import ModelBundle
    from aeops.scoring.rule import ScoringRule
    from aeops.training.train import train

    data = Path(f"{name}_prepared")
    if not data.is_dir():
        prepare(PrepareConfig(**prepare_kw, normal_classes=None, output_dir=str(data)))
    out = f"{name}_l{latent}"
    cfg = TrainConfig(max_epochs=args.epochs, accelerator="cpu", progress_bar=False, ensemble=1, data_dir=str(data),
                      output_dir=out, metrics_file=f"{out}/train.json",
                      model={"architecture": "conv", "latent_dim": latent})
    metrics = train(cfg, MlflowConfig(experiment=f"compression-{name}"))
    bundle = ModelBundle.from_training(out, scaler=load_scaler(data))
    network = bundle.network()
    codes, _ = encode_decode(network, load_split(data, "train").x)
    prior = build_prior(network, codes, bundle.scaler, 255.0)
    replace(bundle, scoring=ScoringRule(threshold=0.0), latent_prior=prior).save(f"{out}/bundle")  # codes only
    return Path(f"{out}/bundle"), float(metrics["fit_seconds"])


def quality(ref: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """Mean per-image PSNR (capped at 100 dB) and MS-SSIM of uint8 (n, h, w[, c]) images."""
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    a, b = ref.astype(np.float64), out.astype(np.float64)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    psnr = np.minimum(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10)), 100.0)
    to = lambda x: torch.from_numpy(x if x.ndim == 4 else x[..., None]).permute(0, 3, 1, 2).float()  # noqa: E731
    ms = ms_ssim(to(b), to(a), data_range=255.0, kernel_size=3, betas=(0.0448, 0.2856, 0.3001), reduction="none")
    return float(psnr.mean()), float(ms.mean())


def _load(paths: list[Path], mode: str) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert(mode)) for p in paths])


def pillow_points(test: np.ndarray, fmt: str, work: Path) -> list[dict[str, Any]]:
    """Every test image as its own JPEG/WebP file at each quality."""
    from PIL import Image

    mode, pixels, points = ("L" if test.ndim == 3 else "RGB"), test[0].shape[0] * test[0].shape[1], []
    for q in QUALITIES:
        folder = work / f"{fmt}_{q}"
        folder.mkdir()
        ext, opts = (".jpg", {"quality": q, "optimize": True}) if fmt == "jpeg" else (".webp", {"quality": q, "method": 6})
        paths = [folder / f"{i:05d}{ext}" for i in range(len(test))]
        t0 = time.perf_counter()
        for p, img in zip(paths, test):
            Image.fromarray(img).save(p, **opts)
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = _load(paths, mode)
        dec = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in paths)
        psnr, ms = quality(test, back)
        points.append({"setting": f"quality {q}", "bpp": 8 * size / (pixels * len(test)), "psnr": psnr,
                       "ms_ssim": ms, "encode_per_s": len(test) / enc, "decode_per_s": len(test) / dec})
    return points


def aeops_points(bundle: Path, test: np.ndarray, work: Path, latent: int) -> list[dict[str, Any]]:
    from aeops.compression.folder import compress_folder, decompress_file, load_codec_model

    mode, pixels = ("L" if test.ndim == 3 else "RGB"), test[0].shape[0] * test[0].shape[1]
    folder = work / "test_png"
    if not folder.is_dir():
        _save(folder, test)
    codec, points = load_codec_model(str(bundle), "sqlite:///unused.db"), []
    for error in ERRORS:
        target = work / f"l{latent}_e{error}.aez"
        t0 = time.perf_counter()
        r = compress_folder(codec, folder, out_file=target, error=error, progress=False)
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        decompress_file(codec, target, work / f"l{latent}_e{error}")
        dec = time.perf_counter() - t0
        back = _load(sorted((work / f"l{latent}_e{error}").glob("*.png")), mode)
        size = target.stat().st_size
        psnr, ms = quality(test, back)
        points.append({"setting": f"latent {latent}, error {error:g}", "latent": latent, "error": error,
                       "bpp": 8 * size / (pixels * len(test)), "header_bytes": r["header_bytes"], "bytes": size,
                       "psnr": psnr, "ms_ssim": ms, "encode_per_s": len(test) / enc, "decode_per_s": len(test) / dec,
                       "clipped_codes": r["clipped_codes"]})
    return points


def at_equal_rate(point: dict, curve: list[dict]) -> dict[str, Any]:
    """A baseline's PSNR at the point's bpp and the bpp it needs for the point's PSNR (None outside its range),
    and the baseline settings the point beats (fewer bits and higher PSNR) or loses to (more bits, lower PSNR)."""
    beats = [p["setting"] for p in curve if p["bpp"] >= point["bpp"] and p["psnr"] <= point["psnr"]]
    beaten_by = [p["setting"] for p in curve if p["bpp"] <= point["bpp"] and p["psnr"] >= point["psnr"]]
    curve = sorted(curve, key=lambda p: p["bpp"])
    bpp, psnr = [p["bpp"] for p in curve], [p["psnr"] for p in curve]
    inside = bpp[0] <= point["bpp"] <= bpp[-1]
    by_psnr = sorted(zip(psnr, bpp))
    reach = by_psnr[0][0] <= point["psnr"] <= by_psnr[-1][0]
    return {"psnr_at_bpp": float(np.interp(point["bpp"], bpp, psnr)) if inside else None,
            "bpp_for_psnr": float(np.interp(point["psnr"], *zip(*by_psnr))) if reach else None,
            "lowest_bpp": bpp[0], "psnr_at_lowest_bpp": psnr[0], "beats": beats, "beaten_by": beaten_by}


def run_set(name: str, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"aeops-compression-{name}-"))
    os.chdir(work)
    prepare_kw, test = (mnist_sets if name == "mnist" else photo_sets)(args, work)
    result = {"test_images": len(test), "image_shape": list(test.shape[1:]), "jpeg": pillow_points(test, "jpeg", work),
              "webp": pillow_points(test, "webp", work), "aeops": [], "fit_seconds": {}}
    for latent in args.latents or LATENTS[name]:
        bundle, seconds = train_codec(name, prepare_kw, latent, args)
        result["fit_seconds"][latent] = seconds
        result["aeops"] += aeops_points(bundle, test, work, latent)
    for point in result["aeops"]:
        point["vs"] = {fmt: at_equal_rate(point, result[fmt]) for fmt in ("jpeg", "webp")}
    result["work"] = str(work)
    return result


def _cell(value: float | None, fmt: str = ".2f") -> str:
    return "–" if value is None else format(value, fmt)


def _qualities(settings: list[str]) -> str:
    """'JPEG 1', 'JPEG 5', 'WebP 1' → 'JPEG q1–5, WebP q1'."""
    by: dict[str, list[str]] = {}
    for s in settings:
        fmt, q = s.split()
        by.setdefault(fmt, []).append(q)
    return ", ".join(f"{f} q{v[0]}" + (f"–{v[-1]}" if len(v) > 1 else "") for f, v in by.items()) or "–"


def table(name: str, r: dict[str, Any]) -> str:
    lines = [f"### {name}: {r['test_images']} test images of {'×'.join(map(str, r['image_shape']))}", "",
             "| codec | setting | bpp | PSNR dB | MS-SSIM | encode img/s | decode img/s | JPEG / WebP PSNR at this bpp | "
             "JPEG / WebP bpp for this PSNR | beats (fewer bits, higher PSNR) | beaten by |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for p in r["aeops"]:
        j, w = p["vs"]["jpeg"], p["vs"]["webp"]
        beats = [f"{f} {s.split()[-1]}" for f, v in (("JPEG", j), ("WebP", w)) for s in v["beats"]]
        beaten = [f"{f} {s.split()[-1]}" for f, v in (("JPEG", j), ("WebP", w)) for s in v["beaten_by"]]
        lines.append(f"| aeops | {p['setting']} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} | "
                     f"{p['encode_per_s']:.0f} | {p['decode_per_s']:.0f} | {_cell(j['psnr_at_bpp'])} / "
                     f"{_cell(w['psnr_at_bpp'])} | {_cell(j['bpp_for_psnr'], '.3f')} / {_cell(w['bpp_for_psnr'], '.3f')} | "
                     f"{_qualities(beats)} | {_qualities(beaten)} |")
    for fmt in ("jpeg", "webp"):
        for p in r[fmt]:
            lines.append(f"| {fmt.upper() if fmt == 'jpeg' else 'WebP'} | {p['setting']} | {p['bpp']:.3f} | "
                         f"{p['psnr']:.2f} | {p['ms_ssim']:.4f} | {p['encode_per_s']:.0f} | {p['decode_per_s']:.0f} | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["mnist", "photos"], choices=["mnist", "photos"])
    parser.add_argument("--epochs", type=int, default=30, help="train.max_epochs per model (patience as in params)")
    parser.add_argument("--latents", type=int, nargs="+", help="latent sizes (default: mnist 8 16 32 64 128, photos 32 64 128)")
    parser.add_argument("--train-rows", type=int, default=20_000, help="MNIST training images")
    parser.add_argument("--test-images", type=int, default=2_000, help="MNIST test images")
    parser.add_argument("--photo-crops", type=int, default=8_000, help="random training crops (both photos)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if "mnist" in args.sets and not MNIST.is_dir():
        print(f"MNIST not found in {MNIST}: running photos only")
        args.sets = [s for s in args.sets if s != "mnist"]
    started, results = time.time(), {}
    here = os.getcwd()
    for name in args.sets:
        results[name] = run_set(name, args)
        os.chdir(here)
        results[name]["table_md"] = table(name, results[name])
        print(results[name]["table_md"], flush=True)
    for r in results.values():  # at the end: MLflow keeps the first set's store open while the process lives
        shutil.rmtree(r.pop("work"), ignore_errors=True)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "seconds": round(time.time() - started),
            "epochs": args.epochs, "errors": list(ERRORS), "qualities": list(QUALITIES)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    target = Path(args.out) / "compression.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    os.replace(tmp, target)


if __name__ == "__main__":
    main()
