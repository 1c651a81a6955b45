"""Benchmark: localisation on textures, measured as MVTec AD measures it (image AUROC, pixel AUROC, AUPRO).

From each texture photo in ../shared/datasets/textures (brick, grass, gravel: 512×512 grayscale, CC0) an
MVTec-like set is built: `good/` holds crops of the top three quarters (training and validation),
`test_good/` normal crops of the bottom quarter, `defect/` bottom-quarter crops with one planted defect
each and `masks/` their masks, so no test pixel was seen in training. Defect kinds are generic: a scratch
(a thin bright or dark line), a patch pasted from another texture or from elsewhere in this one turned a
quarter, a smudge (a blurred blob) and a hole (a dark blob with a soft edge). The pipeline then runs on the
folder as a user would (prepare with normal_dir/abnormal_dir/normal_test_dir/mask_dir → tune → train →
evaluate), and evaluate's metrics are read back: image AUROC, pixel AUROC and AUPRO for the model and
the per-pixel baseline (each pixel's squared z-score against the training crops).
Results: results/localisation.json and a Markdown table.
Usage: python benchmarks/localisation.py [--textures brick,grass] [--configs "tune off"] [--size 64] [--jobs 2]
       [--train 400] [--test 40] [--dir ../shared/datasets/textures]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tabular  # noqa: E402  (params for a run: today's params.yaml with the data settings changed)

TEXTURES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "textures"
OUT = Path(__file__).resolve().parent / "results" / "localisation.json"
NAMES = ("brick", "grass", "gravel")
KINDS = ("scratch", "patch", "smudge", "hole")
CONFIGS: dict[str, dict[str, object]] = {
    "default": {},
    "tune off": {"tune.enabled": False},
    "conv": {"tune.enabled": False, "train.model.architecture": "conv", "train.model.latent_dim": 32},
    # one network for 30 epochs at most (the default ensemble of 3 and 60 epochs take a 2-core CPU 6 times as long)
    "discriminative": {"tune.enabled": False, "train.model.architecture": "conv", "train.model.latent_dim": 32,
                       "train.model.variant": "discriminative", "train.ensemble": 1, "train.max_epochs": 30},
}
tabular.CONFIGS.update(CONFIGS)


def _load(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"), np.float64)


def _blob(size: int, rng: np.random.Generator, *, radius: tuple[float, float]) -> np.ndarray:
    """A soft random ellipse in [0, 1] inside a size×size crop (away from the border)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    cy, cx = rng.uniform(size * 0.25, size * 0.75, 2)
    ry, rx = rng.uniform(*radius, 2)
    angle = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
    return np.clip(1.5 - np.sqrt(u**2 + v**2) * 1.5, 0, 1) ** 0.5


def _line(size: int, rng: np.random.Generator) -> np.ndarray:
    """A thin straight stroke in [0, 1]: its distance field, 1–2.5 px wide, 30–70 % of the crop long."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    angle = rng.uniform(0, np.pi)
    half = rng.uniform(0.15, 0.35) * size
    dy, dx = yy - cy, xx - cx
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = np.abs(-dx * np.sin(angle) + dy * np.cos(angle))
    width = rng.uniform(1.0, 2.5)
    return np.clip(width - across, 0, 1) * (np.abs(along) <= half)


def plant(crop: np.ndarray, kind: str, rng: np.random.Generator, *, donor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the crop with one defect of this kind, its 0/1 mask); `donor`: a crop to paste a patch from."""
    from scipy.ndimage import gaussian_filter

    size = crop.shape[0]
    if kind == "scratch":
        alpha = _line(size, rng)
        value = rng.choice([rng.uniform(0, 40), rng.uniform(215, 255)])
        out = crop * (1 - alpha) + value * alpha
    elif kind == "patch":
        alpha = _blob(size, rng, radius=(size * 0.08, size * 0.2))
        out = crop * (1 - alpha) + donor * alpha
    elif kind == "smudge":
        alpha = _blob(size, rng, radius=(size * 0.1, size * 0.22))
        out = crop * (1 - alpha) + gaussian_filter(crop, 3.0) * alpha
    else:  # hole
        alpha = _blob(size, rng, radius=(size * 0.05, size * 0.15))
        out = crop * (1 - alpha) + rng.uniform(0, 30) * alpha
    return np.clip(out, 0, 255), (alpha > 0.5).astype(np.uint8)


def _crops(image: np.ndarray, rows: tuple[int, int], n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    top = rng.integers(rows[0], rows[1] - size + 1, n)
    left = rng.integers(0, image.shape[1] - size + 1, n)
    return [image[t : t + size, s : s + size] for t, s in zip(top, left)]


def build(texture: str, out: Path, *, size: int = 64, train: int = 400, test: int = 40, seed: int = 0,
          textures: Path = TEXTURES) -> Path:
    """Write the MVTec-like folder for one texture under `out` (good/, test_good/, defect/, masks/); return it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = _load(textures / f"{texture}.png")
    others = [_load(textures / f"{n}.png") for n in NAMES if n != texture and (textures / f"{n}.png").is_file()]
    cut = image.shape[0] * 3 // 4
    folders = {name: out / name for name in ("good", "test_good", "defect", "masks")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)

    def save(array: np.ndarray, path: Path) -> None:
        Image.fromarray(np.round(array).astype(np.uint8)).save(path)

    for i, crop in enumerate(_crops(image, (0, cut), train, size, rng)):
        save(crop, folders["good"] / f"{i:04d}.png")
    for i, crop in enumerate(_crops(image, (cut, image.shape[0]), test, size, rng)):
        save(crop, folders["test_good"] / f"{i:04d}.png")
    for i, crop in enumerate(_crops(image, (cut, image.shape[0]), test, size, rng)):
        kind = KINDS[i % len(KINDS)]
        source = others[i % len(others)] if others and i % 2 == 0 else np.rot90(image)
        donor = _crops(source, (0, source.shape[0]), 1, size, rng)[0]
        defect, mask = plant(crop, kind, rng, donor=donor)
        save(defect, folders["defect"] / f"{i:04d}_{kind}.png")
        save(mask * 255, folders["masks"] / f"{i:04d}_{kind}_mask.png")
    return out


def job(config: str, texture: str, seed: int, *, size: int, counts: tuple[int, int] = (400, 40),
        textures: Path = TEXTURES) -> dict:
    """Build the set and run the pipeline on it in a temporary project; evaluate's localisation numbers."""
    import torch

    from aeops.cli import run_stage

    threads = int(os.environ.get("AEOPS_BENCH_THREADS", "2"))  # per run: --jobs × threads ≤ the cores
    torch.set_num_threads(threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        build(texture, Path(tmp) / "data", size=size, train=counts[0], test=counts[1], seed=seed, textures=textures)
        params = tabular._run_params({"source": "image_folder", "path": "data", "normal_dir": "good",
                                      "abnormal_dir": "defect", "normal_test_dir": "test_good", "mask_dir": "masks",
                                      "normal_classes": None, "seed": seed}, config)
        params["train"]["num_threads"] = threads
        Path("params.yaml").write_text(yaml.safe_dump(params))
        for stage in ("prepare", "tune", "train", "evaluate"):
            if run_stage(stage) != 0:
                return {"config": config, "texture": texture, "seed": seed, "error": f"{stage} failed"}
        metrics = json.loads(Path("metrics/evaluate.json").read_text())
        speed = _speed()
    where = metrics["localisation"]
    return {"config": config, "texture": texture, "seed": seed, "seconds": round(time.perf_counter() - start, 1),
            "image_auroc": round(metrics["model"]["auroc"], 4),
            "pixel_auroc": round(where["model"]["pixel_auroc"], 4), "aupro": round(where["model"]["aupro"], 4),
            "baseline_pixel_auroc": round(where["per_pixel"]["pixel_auroc"], 4),
            "baseline_aupro": round(where["per_pixel"]["aupro"], 4),
            "mask_iou": round(where["mask_iou"], 4), "regions": where["regions"], **speed}


def _speed(n: int = 1000) -> dict[str, float]:
    """In-process images/s of the evaluated bundle on n test images (repeated): scores, and anomaly maps."""
    import pandas as pd

    from aeops.data.prepared import load_split
    from aeops.scoring.bundle import ModelBundle
    from aeops.scoring.scorer import Scorer

    scorer = Scorer(ModelBundle.load("bundle"))
    test = load_split("data/prepared", "test")
    raw = scorer.preprocessor.unscale(test.x)
    frame = pd.DataFrame(np.resize(raw, (n, raw.shape[1])), columns=scorer.features)
    out = {}
    for key, output in (("scores_per_s", "scores"), ("maps_per_s", "anomaly_map")):
        scorer.score(frame.head(10), output=output)  # warm up
        start = time.perf_counter()
        scorer.score(frame, output=output)
        out[key] = round(n / (time.perf_counter() - start), 1)
    return out


def table(rows: list[dict]) -> str:
    head = ("| config | texture | image AUROC | pixel AUROC | AUPRO | per-pixel pixel AUROC | per-pixel AUPRO | mask IoU |"
            "\n|---|---|---|---|---|---|---|---|")
    body = [f"| {r['config']} | {r['texture']} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | {r['aupro']:.3f} | "
            f"{r['baseline_pixel_auroc']:.3f} | {r['baseline_aupro']:.3f} | {r['mask_iou']:.3f} |"
            for r in rows if "error" not in r]
    return "\n".join([head, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textures", default=",".join(NAMES))
    parser.add_argument("--configs", default="tune off,discriminative")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train", type=int, default=400, help="training crops per texture")
    parser.add_argument("--test", type=int, default=40, help="normal and defective test crops per texture, each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--dir", default=str(TEXTURES))
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if not Path(args.dir).is_dir():
        sys.exit(f"{args.dir}: texture photos not found (../shared/datasets/textures)")
    rows: list[dict] = []
    jobs = [(c, t) for c in args.configs.split(",") for t in args.textures.split(",")]
    with ProcessPoolExecutor(max_workers=args.jobs, max_tasks_per_child=1) as pool:  # a fresh process a run
        futures = [pool.submit(job, c, t, args.seed, size=args.size, counts=(args.train, args.test),
                               textures=Path(args.dir)) for c, t in jobs]
        for future in as_completed(futures):
            rows.append(future.result())
            print(json.dumps(rows[-1]), flush=True)
            rows.sort(key=lambda r: jobs.index((r["config"], r["texture"])))
            out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "size": args.size, "rows": rows,
                   "table_md": table(rows)}
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
