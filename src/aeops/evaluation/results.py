"""What an evaluation's metrics file holds, read without the evaluation's heavy imports (register, promote, the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from aeops.config import EvaluateConfig

INFO_KEYS = ("warnings", "localisation")  # keys of metrics/evaluate.json that are not methods
LOCALISATION = ("pixel_auroc", "aupro")  # an image model's with test masks (prepare.mask_dir), and the per-pixel baseline's


def methods(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-method entries of an evaluation (model and baselines), without warnings/provenance."""
    return {k: v for k, v in results.items() if k not in INFO_KEYS}


def report_path(cfg: EvaluateConfig, run_id: str) -> Path:
    return Path(cfg.report_dir) / f"{run_id}.html"


HEADLINE = {"model": ("auroc", "auprc", "recon_mse", "threshold"), "baseline": ("auroc", "auprc")}
# MLflow's metrics tab sorts chart sections by name: `test` (the model's numbers), then the `train` and `val`
# curves, then `vs_baseline/<method>`; a `baseline/…` prefix would put three sections before the curves.
BASELINE_PREFIX = "vs_baseline"
CONSTANTS = ("latent_dim", "ensemble", "score_smoothing", "score_top_fraction", "score_standardized", "score_neighbors",
             "score_knn_weight", "score_choice", "contamination")


def headline_metrics(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """`test/<key>` for the model and `vs_baseline/<method>/<key>` for each baseline: the few numbers that compare."""
    flat: dict[str, float] = {}
    for method, values in methods(results).items():
        prefix, keys = ("test", HEADLINE["model"]) if method == "model" else (f"{BASELINE_PREFIX}/{method}", HEADLINE["baseline"])
        flat.update({f"{prefix}/{k}": float(values[k]) for k in keys if values.get(k) is not None})
    for method, values in results.get("localisation", {}).items():
        if isinstance(values, dict):
            prefix = "test" if method == "model" else f"{BASELINE_PREFIX}/{method}"
            flat.update({f"{prefix}/{k}": float(values[k]) for k in LOCALISATION if values.get(k) is not None})
    return flat


def comparison_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per method (the model first), one column per measured value; settings left out."""
    rows = [{"method": "aeops" if m == "model" else m, **{k: v for k, v in values.items() if k not in CONSTANTS}}
            for m, values in methods(results).items()]
    return pd.DataFrame(rows)
