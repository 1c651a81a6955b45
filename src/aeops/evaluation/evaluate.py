"""Stage `evaluate`: the trained model and classical baselines on the same test split, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeops.config import EvaluateConfig, MlflowConfig
from aeops.data.prepared import Split, load_meta, load_split
from aeops.errors import ConfigError, DataError
from aeops.evaluation import plots
from aeops.evaluation.baselines import QUANT_BITS, model_metrics, run_baselines
from aeops.evaluation.metrics import quantize_codes
from aeops.evaluation.scoring import score_rule
from aeops.io import atomic_path, read_json, write_json
from aeops.models.lightning import load_autoencoder


@torch.no_grad()
def encode_decode(model: torch.nn.Module, x: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic codes and reconstructions, in batches."""
    codes, recons = [], []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i : i + batch])
        z = model.encode(xb)
        codes.append(z.numpy())
        recons.append(model.decode(z).numpy())
    return np.concatenate(codes), np.concatenate(recons)


@torch.no_grad()
def decode(model: torch.nn.Module, codes: np.ndarray) -> np.ndarray:
    return model.decode(torch.from_numpy(codes.astype(np.float32))).numpy()


def _normal_rows(split: Split) -> np.ndarray:
    """Validation rows that set thresholds: the normal ones (all of them without a protocol)."""
    return split.x if split.is_anomaly is None else split.x[split.is_anomaly == 0]


def evaluate(cfg: EvaluateConfig, mlflow_cfg: MlflowConfig) -> dict[str, dict[str, Any]]:
    """Score the model and the baselines; write metrics and plots; log both to the training run."""
    run_path = Path(cfg.model_dir) / "run.json"
    if not run_path.exists():
        raise DataError(f"{run_path}: not found; run `dvc repro train` first")
    info = read_json(run_path)
    model, hparams = load_autoencoder(info["best_checkpoint"])
    meta = load_meta(cfg.data_dir)
    train, val, test = (load_split(cfg.data_dir, s) for s in ("train", "val", "test"))
    val_x = _normal_rows(val)
    lo, hi = meta["value_range"]
    data_range = float(hi - lo) or 1.0
    latent_dim = int(hparams["model_cfg"]["latent_dim"])
    if cfg.score_smoothing > 0 and not meta["image_shape"]:
        raise ConfigError(
            f"params.yaml: evaluate.score_smoothing = {cfg.score_smoothing} needs image data "
            "(prepare.source digits, mnist or fashion_mnist); use 0 for tables"
        )

    train_codes, _ = encode_decode(model, train.x)
    val_codes, val_recon = encode_decode(model, val_x)
    test_codes, test_recon = encode_decode(model, test.x)
    quantized = quantize_codes(test_codes, train_codes.min(0), train_codes.max(0), QUANT_BITS)
    score = score_rule(cfg.score_smoothing, meta["image_shape"], cfg.score_top_fraction)
    test_scores = score(test.x, test_recon)
    results = {
        "model": model_metrics(
            train_codes, train.labels, score(val_x, val_recon), test.x, test_recon,
            decode(model, quantized), test_codes, test_scores, test.labels, test.is_anomaly,
            latent_dim, data_range, cfg,
        )
    }
    baselines, baseline_scores = run_baselines(
        train.x, train.labels, val_x, test.x, test.labels, test.is_anomaly, latent_dim, data_range, cfg,
        score,
    )
    results.update(baselines)
    for method in ("model", "pca"):  # the rule travels with the threshold (register reads both)
        results[method] |= {"score_smoothing": cfg.score_smoothing, "score_top_fraction": cfg.score_top_fraction}
    scores = {"model": test_scores, **baseline_scores}

    with atomic_path(cfg.plots_dir) as tmp:
        tmp.mkdir(parents=True)
        plots.write_curve_csvs(tmp, scores, test.is_anomaly)
        plots.plot_curves_png(tmp, scores, test.is_anomaly)
        plots.plot_score_histograms(
            tmp, scores, test.is_anomaly, {m: r.get("threshold") for m, r in results.items()}
        )
    write_json(cfg.metrics_file, results)
    _log(info, cfg, mlflow_cfg, results)
    return results


def _log(info: dict, cfg: EvaluateConfig, mlflow_cfg: MlflowConfig, results: dict) -> None:
    """Metrics (`test/<key>` for the model, `baseline/<method>/<key>`), params and plots → training run."""
    import mlflow

    from aeops.tracking import flatten, setup_experiment

    setup_experiment(mlflow_cfg)
    flat: dict[str, float] = {}
    for method, values in results.items():
        prefix = "test" if method == "model" else f"baseline/{method}"
        flat.update({f"{prefix}/{k}": float(v) for k, v in values.items() if v is not None})
    with mlflow.start_run(run_id=info["run_id"]):
        mlflow.set_tags(flatten(cfg.model_dump(), "evaluate."))  # tags: a rerun may change them
        mlflow.log_metrics(flat)
        mlflow.log_artifact(cfg.metrics_file, "evaluate")
        mlflow.log_artifacts(cfg.plots_dir, "evaluate/plots")
