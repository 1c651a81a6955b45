"""Benchmark: Lightning training overhead vs a hand-written PyTorch loop, and achieved FLOP/s.

Same model, data, batch size (256), optimiser and seed; one training epoch each, median of
`--repeats`. Achieved FLOP/s = FLOPs of one training step (torch's FLOP counter) x steps / epoch
time, divided by the FLOP/s of a dense float32 matrix product measured in the same process.
Data: MNIST from ../shared/datasets/mnist (first `--rows` training images), else sklearn digits.
Usage: python benchmarks/training_speed.py [--rows 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from aeops.config import ModelConfig
from aeops.io import write_json
from aeops.models.lightning import LitAutoencoder
from aeops.training.datamodule import TensorRows, keep_batch

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
MODELS = {
    "mlp": {"latent_dim": 32, "mlp": {"hidden": [512, 256]}},
    "conv": {"latent_dim": 32, "architecture": "conv", "conv": {"channels": [32, 64]}},
}


def load_data(rows: int) -> tuple[torch.Tensor, tuple[int, int, int], str]:
    if MNIST.is_dir():
        from aeops.data.sources import load_idx_dir

        raw = load_idx_dir(MNIST)
        return torch.from_numpy((raw.x[:rows] / 255.0).astype(np.float32)), (1, 28, 28), f"MNIST ({rows} rows)"
    from sklearn.datasets import load_digits

    x = load_digits().data / 16.0
    return torch.from_numpy(x.astype(np.float32)), (1, 8, 8), "digits (MNIST not found)"


def loader(x: torch.Tensor, batch: int) -> DataLoader:
    return DataLoader(TensorRows(x), batch_size=batch, shuffle=True, collate_fn=keep_batch)


def lit_module(cfg: dict, shape: tuple[int, int, int]) -> LitAutoencoder:
    d = shape[0] * shape[1] * shape[2]
    return LitAutoencoder(ModelConfig.model_validate(cfg).model_dump(), d, image_shape=list(shape), unit_interval=True, lr=1e-3)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def raw_epoch(cfg: dict, shape, x: torch.Tensor, batch: int, seed: int, device: str = "cpu") -> float:
    L.seed_everything(seed, verbose=False)
    model = lit_module(cfg, shape).model.train().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = loader(x, batch)
    sync(device)
    start = time.perf_counter()
    for xb in data:
        loss = model(xb.to(device, non_blocking=True)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


class EpochTimer(L.Callback):
    def __init__(self, device: str):
        self.device = device

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        sync(self.device)
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self.start


def lightning_epoch(cfg: dict, shape, x: torch.Tensor, batch: int, seed: int, device: str = "cpu") -> float:
    L.seed_everything(seed, verbose=False)
    timer = EpochTimer(device)
    trainer = L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, callbacks=[timer],
    )
    trainer.fit(lit_module(cfg, shape), train_dataloaders=loader(x, batch))
    return timer.seconds


def step_flops(cfg: dict, shape, batch: int) -> int:
    model = lit_module(cfg, shape).model.train()
    xb = torch.rand(batch, shape[0] * shape[1] * shape[2])
    with FlopCounterMode(display=False) as counter:
        model(xb).loss.backward()
    return counter.get_total_flops()


def matmul_flops_per_s(n: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def measure(device: str, x: torch.Tensor, shape, args: argparse.Namespace) -> dict:
    """Per model: raw vs Lightning epoch (median of interleaved repeats) and hardware use on `device`."""
    peak = matmul_flops_per_s(n=8192 if device == "cuda" else 2048, device=device)
    out = {"matmul_gflops": round(peak / 1e9, 1), "models": {}}
    steps = -(-len(x) // args.batch)
    for name, cfg in MODELS.items():
        raw_epoch(cfg, shape, x, args.batch, 0, device)  # warm-up
        lightning_epoch(cfg, shape, x, args.batch, 0, device)
        raw, lit = [], []
        for i in range(args.repeats):  # interleaved so drift hits both alike
            raw.append(raw_epoch(cfg, shape, x, args.batch, i, device))
            lit.append(lightning_epoch(cfg, shape, x, args.batch, i, device))
        raw_s, lit_s = statistics.median(raw), statistics.median(lit)
        flops = step_flops(cfg, shape, args.batch) * steps
        out["models"][name] = {
            "raw_epoch_s": round(raw_s, 3), "lightning_epoch_s": round(lit_s, 3),
            "lightning_over_raw": round(lit_s / raw_s, 3),
            "achieved_gflops": round(flops / lit_s / 1e9, 1),
            "hardware_use": round(flops / lit_s / peak, 3),
        }
    return out


def table(title: str, r: dict) -> None:
    print(f"{title}; dense fp32 matmul: {r['matmul_gflops']} GFLOP/s")
    print("| model | raw loop epoch (s) | Lightning epoch (s) | Lightning / raw | achieved GFLOP/s | of matmul peak |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, m in r["models"].items():
        print(f"| {name} | {m['raw_epoch_s']} | {m['lightning_epoch_s']} | {m['lightning_over_raw']:.3f} "
              f"| {m['achieved_gflops']} | {m['hardware_use']:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training_speed.json"))
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    x, shape, data_name = load_data(args.rows)
    cpu = measure("cpu", x, shape, args)
    report = {
        "benchmark": "training_speed", "data": data_name, "batch": args.batch, "repeats": args.repeats,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads", **cpu,
    }
    if torch.cuda.is_available():  # GPU figures recorded separately; the CPU ones above always run
        report["gpu"] = {"device": torch.cuda.get_device_name(0), **measure("cuda", x, shape, args)}
    write_json(args.out, report)
    table(f"CPU, {data_name}, batch {args.batch}, median of {args.repeats}", cpu)
    if "gpu" in report:
        table(f"GPU {report['gpu']['device']}", report["gpu"])

if __name__ == "__main__":
    main()
