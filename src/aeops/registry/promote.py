"""Promotion by alias: `production` moves to a version only if it is not worse on the same test split.

Only like is compared with like: the candidate, the production version and the current test split
must have the same input columns, or promotion stops (exit 1), `--force` included.

The alias order keeps the registry safe: `previous` is set before `production` is moved, and an
alias is only ever overwritten, never deleted, so a killed promotion never leaves the model
without `production` when it had one.
"""

from __future__ import annotations

import math
import time
from typing import Any

from aeops.config import MlflowConfig, RegisterConfig
from aeops.data.raw import raw_split
from aeops.errors import AeopsError, PromotionRefused
from aeops.registry.register import PREVIOUS, PRODUCTION
from aeops.scoring.reference import registered
from aeops.tracking import lost_run_hint, setup_experiment


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def score_version(name: str, version: str, data_dir: str, metric: str) -> float:
    """Score a registered version on the current test split with its own pyfunc (metrics.py's formulas)."""
    import mlflow

    from aeops.data.prepared import load_meta
    from aeops.evaluation import metrics
    from aeops.scoring.batch import conform

    df, split = raw_split(data_dir)
    model = mlflow.pyfunc.load_model(registered(name, version=version))
    out = model.predict(conform(df, model.metadata.get_input_schema()))  # an older version may say float32
    if metric in ("recon_mse", "psnr"):
        mse = float(out["reconstruction_error"].mean())  # equal row widths: the mean of row MSEs is the MSE
        if metric == "recon_mse":
            return mse
        lo, hi = load_meta(data_dir).value_range
        value = metrics.psnr(mse, float(hi - lo) or 1.0)
        return math.inf if value is None else value
    if not metrics.has_two_classes(split.is_anomaly):
        raise AeopsError(f"promote: metric '{metric}' needs anomaly labels in the test split; use recon_mse")
    threshold = model.unwrap_python_model().scorer.threshold
    return float(metrics.anomaly_metrics(out["anomaly_score"].to_numpy(), split.is_anomaly, threshold)[metric])


def input_columns(name: str, version: str) -> list[str]:
    """The input columns a registered version's signature names."""
    from mlflow.models import get_model_info

    signature = get_model_info(registered(name, version=version)).signature
    return list(signature.inputs.input_names()) if signature is not None else []


def _same_inputs(name: str, target: str, current: str | None, data_dir: str) -> None:
    """Refuse (even with --force) to compare or swap models that take different columns, or to judge on other data."""
    columns = list(raw_split(data_dir, head=1)[0].columns)
    wanted = input_columns(name, target)
    if wanted != columns:
        raise PromotionRefused(
            f"promote: version {target} takes {len(wanted)} columns, but {data_dir} holds {len(columns)} "
            f"({_head(columns)}): it was trained on other data; run `dvc repro` with its data first"
        )
    if current is not None and input_columns(name, current) != wanted:
        have = input_columns(name, current)
        raise PromotionRefused(
            f"promote: version {target} takes {len(wanted)} columns ({_head(wanted)}), production version {current} "
            f"takes {len(have)} ({_head(have)}): not the same input schema, so they cannot replace each other "
            "(--force does not change that); register it under another register.model_name"
        )


def _head(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", …" if len(names) > 3 else "")


MAX_DESCRIPTION = 4000  # MLflow's SQL stores keep 5,000 characters of a version description


def _append_note(description: str, note: str) -> str:
    """The description with one more promotion note; the oldest notes go first once it would not fit."""
    head, *notes = description.split("\n\nAlias `production` set at ")
    notes = [f"Alias `production` set at {n}" for n in notes] + [note]
    while notes and len("\n\n".join([head, *notes])) > MAX_DESCRIPTION:
        notes.pop(0)
    return "\n\n".join([head, *notes]).strip()


def _move(client: Any, name: str, *, target: str, current: str | None, reason: str) -> None:
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current)
    client.set_registered_model_alias(name, PRODUCTION, target)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for key, value in (("promoted_at", stamp), ("promotion_reason", reason), ("previous_version", current or "none")):
        client.set_model_version_tag(name, target, key, value)
    described = client.get_model_version(name, target).description or ""
    note = f"Alias `production` set at {stamp}: {reason} (previous production: {current or 'none'})."
    client.update_model_version(name, target, _append_note(described, note))


def promote(
    cfg: RegisterConfig, mlflow_cfg: MlflowConfig, *, version: str | None = None, force: bool = False,
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
        _move(client, name, target=target, current=current, reason=f"rollback from version {current}")
        return {"name": name, "production": target, "previous": current, "reason": "rollback"}

    target = str(version) if version is not None else _alias_version(client, name, "challenger")
    if target is None:
        raise AeopsError(lost_run_hint(mlflow_cfg, cfg.output_file)
                         or f"promote: model '{name}' has no 'challenger' version; run `dvc repro` (stage register)")
    if target == current:
        return {"name": name, "production": target, "previous": None, "reason": "already production"}
    metric = cfg.promotion_metric
    result: dict[str, Any] = {"name": name, "metric": metric}
    _same_inputs(name, target, current, cfg.data_dir)
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
    _move(client, name, target=target, current=current, reason=reason)
    return result | {"production": target, "previous": current, "reason": reason}
