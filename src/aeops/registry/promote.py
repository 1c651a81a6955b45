"""Promotion by alias: `production` moves to a version only if it is not worse on the same test split.

The alias order keeps the registry safe: `previous` is set before `production` is moved, and an
alias is only ever overwritten, never deleted, so a killed promotion never leaves the model
without `production` when it had one.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from aeops.config import MlflowConfig, RegisterConfig
from aeops.errors import AeopsError, PromotionRefused
from aeops.registry.register import PREVIOUS, PRODUCTION, raw_split
from aeops.tracking import setup_experiment


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def score_version(name: str, version: str, data_dir: str, metric: str) -> float:
    """Score a registered version on the current test split with its own pyfunc."""
    import mlflow

    df, split = raw_split(data_dir)
    out = mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(df)
    err = out["reconstruction_error"].to_numpy()
    if metric in ("recon_mse", "psnr"):
        mse = float(err.mean())
        if metric == "recon_mse":
            return mse
        return math.inf if mse == 0 else 10 * math.log10(_data_range(data_dir) ** 2 / mse)
    y = split.is_anomaly
    if y is None or len(np.unique(y)) < 2:
        raise AeopsError(f"promote: metric '{metric}' needs anomaly labels in the test split; use recon_mse")
    if metric == "auroc":
        return float(roc_auc_score(y, out["anomaly_score"]))
    if metric == "auprc":
        return float(average_precision_score(y, out["anomaly_score"]))
    return float(f1_score(y, out["is_anomaly"], zero_division=0))


def _data_range(data_dir: str) -> float:
    from aeops.data.prepared import load_meta

    lo, hi = load_meta(data_dir)["value_range"]
    return float(hi - lo) or 1.0


def _move(client: Any, name: str, target: str, current: str | None, reason: str) -> None:
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current)
    client.set_registered_model_alias(name, PRODUCTION, target)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for key, value in (("promoted_at", stamp), ("promotion_reason", reason), ("previous_version", current or "none")):
        client.set_model_version_tag(name, target, key, value)


def promote(
    cfg: RegisterConfig, mlflow_cfg: MlflowConfig, version: str | None = None, force: bool = False,
    rollback: bool = False,
) -> dict[str, Any]:
    """Move `production` (default candidate: `challenger`); `rollback` moves it back to `previous`."""
    import mlflow

    setup_experiment(mlflow_cfg)
    client, name = mlflow.MlflowClient(), cfg.model_name
    current = _alias_version(client, name, PRODUCTION)
    if rollback:
        target = _alias_version(client, name, PREVIOUS)
        if target is None:
            raise AeopsError(f"promote --rollback: model '{name}' has no '{PREVIOUS}' version to roll back to")
        _move(client, name, target, current, f"rollback from version {current}")
        return {"name": name, "production": target, "previous": current, "reason": "rollback"}

    target = str(version) if version is not None else _alias_version(client, name, "challenger")
    if target is None:
        raise AeopsError(f"promote: model '{name}' has no 'challenger' version; run `dvc repro` (stage register)")
    if target == current:
        return {"name": name, "production": target, "previous": None, "reason": "already production"}
    metric = cfg.promotion_metric
    result: dict[str, Any] = {"name": name, "metric": metric}
    if current is not None:
        new, old = (score_version(name, v, cfg.data_dir, metric) for v in (target, current))
        result |= {"candidate_score": new, "production_score": old}
        worse = new < old if cfg.higher_is_better else new > old
        if worse and not force:
            direction = "higher" if cfg.higher_is_better else "lower"
            raise PromotionRefused(
                f"promote: version {target} has {metric} {new:.6f}, worse than production version {current} "
                f"({old:.6f}; {direction} is better) on the same test split; use --force to promote anyway"
            )
        reason = f"{metric} {new:.6f} vs {old:.6f}" + (" (forced)" if worse else "")
    else:
        reason = "first production version"
    _move(client, name, target, current, reason)
    return result | {"production": target, "previous": current, "reason": reason}
