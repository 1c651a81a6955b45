"""Benchmark: peak memory of the image-folder path as the folder grows (prepare, train, evaluate).

Writes two folders of RGB PNGs, `--images` and four times as many (smooth random images, a fifth of
them with a bright square: the anomalies), and runs aeops' own stages on each in fresh processes:
`prepare` (source image_folder), `train` (a small conv model, `--epochs` epochs, ensemble 1) and
`evaluate`. Per process: its peak resident memory (ru_maxrss), and its peak anonymous memory
(RssAnon, sampled every 20 ms from /proc): pages of the memory-mapped pixel files count in the
first but are page cache the kernel can drop, so the second is what must fit in RAM. Bounded memory
shows as a large/small ratio near 1 while the decoded pixels grow four times; memory that follows
the folder shows as a ratio near 4. The stages run on the aeops found on PYTHONPATH (run it with another
checkout's `src` to compare code versions).
Usage: python benchmarks/image_memory.py [--images 3000] [--size 64] [--epochs 1] [--stages prepare,train,evaluate] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
STAGES = ["prepare", "train", "evaluate"]
STAGE = r"""
import json, resource, sys
from aeops.config import EvaluateConfig, MlflowConfig, PrepareConfig, TrainConfig
args = json.loads(sys.argv[1])
mlflow_cfg = MlflowConfig(experiment="image-memory")
if args["stage"] == "prepare":
    from aeops.data.prepare import prepare
    prepare(PrepareConfig(source="image_folder", path=args["path"], normal_classes=["good"]))
elif args["stage"] == "train":
    from aeops.training.train import train
    train(TrainConfig(max_epochs=args["epochs"], patience=args["epochs"], batch_size=64, accelerator="cpu",
                      progress_bar=False, ensemble=1, min_epoch_rows=0,
                      model={"architecture": "conv", "latent_dim": 32, "conv": {"channels": [16, 32]}}), mlflow_cfg)
else:
    from aeops.evaluation.evaluate import evaluate
    evaluate(EvaluateConfig(isolation_forest_trees=50), mlflow_cfg)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_folder(root: Path, n: int, size: int, seed: int) -> int:
    """`n` PNGs under root/good and root/defect (a fifth); returns the decoded bytes (uint8)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls in ("good", "defect"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR)).copy()
        defect = i % 5 == 0
        if defect:
            r, c = rng.integers(0, size - size // 4, size=2)
            img[r : r + size // 4, c : c + size // 4] = 255
        Image.fromarray(img).save(root / ("defect" if defect else "good") / f"{i:06d}.png")
    return n * size * size * 3


def _anon_mb(pid: int) -> float:
    """The process's anonymous resident memory (RssAnon) in MB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((ln for ln in status.splitlines() if ln.startswith("RssAnon:")), "RssAnon: 0 kB")
    return int(line.split()[1]) / 1024


def run_stages(work: Path, folder: Path, epochs: int, stages: list[str]) -> dict[str, dict[str, float]]:
    """Each stage in a fresh process in `work`: its peak RSS and peak anonymous memory (MB), wall seconds."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "PYTHONWARNINGS": "ignore"}
    out = {}
    for stage in stages:
        start = time.perf_counter()
        arg = json.dumps({"stage": stage, "path": str(folder), "epochs": epochs})
        with tempfile.TemporaryFile("w+") as log:
            proc = subprocess.Popen([sys.executable, "-c", STAGE, arg], cwd=work, env=env, stdout=log, stderr=log,
                                    text=True)
            anon = 0.0
            while proc.poll() is None:
                anon = max(anon, _anon_mb(proc.pid))
                time.sleep(0.02)
            log.seek(0)
            text = log.read()
        if proc.returncode != 0:
            raise SystemExit(f"{stage} failed on {folder}:\n{text[-3000:]}")
        peak = json.loads(text.strip().splitlines()[-1])["peak_rss_mb"]
        out[stage] = {"peak_rss_mb": round(peak, 1), "peak_anon_mb": round(anon, 1),
                      "seconds": round(time.perf_counter() - start, 1)}
        print(f"  {stage}: peak RSS {peak:,.0f} MB, peak anonymous {anon:,.0f} MB, {out[stage]['seconds']} s", flush=True)
    return out


def code_version() -> str:
    import aeops

    src = Path(aeops.__file__).resolve().parent
    done = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000, help="images in the small folder (the large one has 4×)")
    ap.add_argument("--size", type=int, default=64, help="image height and width (RGB)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--stages", default="prepare,train,evaluate", help="comma-separated, in order (each needs the ones before)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    stages = args.stages.split(",")
    if stages != STAGES[: len(stages)]:
        ap.error(f"--stages must be a prefix of {','.join(STAGES)}, got {args.stages}")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.images, 4 * args.images):
            work = Path(tmp) / f"n{n}"
            work.mkdir()
            decoded = write_folder(work / "images", n, args.size, seed=n)
            print(f"{n} images ({decoded / 1e6:,.0f} MB decoded as uint8)", flush=True)
            rows[str(n)] = {"decoded_mb": round(decoded / 1e6, 1), "stages": run_stages(work, work / "images", args.epochs, stages)}
    small, large = (rows[str(n)]["stages"] for n in (args.images, 4 * args.images))
    ratios = {s: {k: round(large[s][k] / small[s][k], 2) for k in ("peak_rss_mb", "peak_anon_mb")} for s in small}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "aeops_commit": code_version(),
              "image_shape": [args.size, args.size, 3], "epochs": args.epochs, "folders": rows,
              "large_over_small": ratios}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "image_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
