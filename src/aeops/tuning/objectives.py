"""What a search trial is judged by: reconstruction, or detection of held-out or synthetic anomalies.

- `val_recon_loss`: the plain validation reconstruction MSE (needs no labels, but rewards codes
  close to the identity, which reconstruct anomalies well too).
- `val_auroc`: 1 - AUROC of normal validation rows vs the labelled anomalies prepare kept outside
  test (`val_anomalies.parquet`); test rows are never used.
- `val_synthetic_auroc`: the same against synthetic anomalies made from normal validation rows by
  swapping a share of each row's features with another row's (the marginals stay, the joint
  structure breaks); for data without labels.
Scores are the per-row reconstruction MSE of the trial's network.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from aeops.data.prepared import VAL_ANOMALIES, has_split, load_meta, sample_split
from aeops.data.synthetic import synthetic_anomalies
from aeops.errors import ConfigError
from aeops.models.ensemble import reconstruct_members

OBJECTIVE_METRIC = {"val_recon_loss": "val/recon_loss", "val_auroc": "val/auroc_loss",
                    "val_synthetic_auroc": "val/synthetic_auroc_loss"}


def resolve_objective(objective: str, data_dir: str) -> str:
    """`auto` → val_auroc where prepare kept labelled anomalies outside test; else, for tables,
    val_synthetic_auroc (on the 14 shared tables, split 0, labels hidden from tune: mean AUROC 0.902
    vs 0.897 for val_recon_loss and 0.901 for val_auroc with labels); for images, val_recon_loss
    (the synthetic objective was not measured on images)."""
    if objective != "auto":
        return objective
    if has_split(data_dir, VAL_ANOMALIES):
        return "val_auroc"
    return "val_recon_loss" if load_meta(data_dir).image_shape else "val_synthetic_auroc"


class DetectionAUROC(L.Callback):
    """Logs `metric` = 1 - AUROC of the reconstruction MSE (the residual against each network's `score_target`),
    normal rows vs anomalies, each validation."""

    def __init__(self, normal: np.ndarray, anomalies: np.ndarray, metric: str):
        self.x = torch.from_numpy(np.concatenate([normal, anomalies]).astype(np.float32))
        self.y = np.r_[np.zeros(len(normal)), np.ones(len(anomalies))]
        self.metric = metric

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from sklearn.metrics import roc_auc_score

        x = self.x.to(pl_module.device)
        # what the scoring rule compares rows with (a discriminative head's map, not its reconstruction)
        residual = (reconstruct_members(pl_module.model, x).mean(0) - x).flatten(1)
        layout = getattr(pl_module.model, "layout", None)  # a mixed-type table: one residual per column
        if layout is None:
            scores = (residual**2).mean(1).double().cpu().numpy()
        else:
            grouped = layout.group_residuals(residual.double().cpu().numpy()[None], self.x.numpy())[0]
            scores = (grouped**2).mean(1)
        if np.isfinite(scores).all():  # a diverging trial: its val/loss stops it
            pl_module.log(self.metric, 1.0 - float(roc_auc_score(self.y, scores)))


def objective_callbacks(objective: str, data_dir: str, seed: int) -> list[L.Callback]:
    """The callbacks that log a detection objective (none for val_recon_loss, which the model logs)."""
    if objective == "val_recon_loss":
        return []
    normal = sample_split(data_dir, "val", seed)[0].x
    if objective == "val_synthetic_auroc":
        anomalies = synthetic_anomalies(normal, seed, layout=load_meta(data_dir).layout)
        return [DetectionAUROC(normal, anomalies, OBJECTIVE_METRIC[objective])]
    if not has_split(data_dir, VAL_ANOMALIES):
        raise ConfigError(
            "params.yaml: tune.objective = 'val_auroc' needs labelled anomalies (prepare.anomaly_column or "
            "prepare.normal_classes); use val_synthetic_auroc, val_recon_loss or auto"
        )
    return [DetectionAUROC(normal, sample_split(data_dir, VAL_ANOMALIES, seed)[0].x, OBJECTIVE_METRIC[objective])]
