"""Which model config training uses: the tuned one (`best_params.json`) or the fixed `train.model`, and why."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aeops.config import TrainConfig
from aeops.data.prepared import PreparedData
from aeops.errors import ConfigError
from aeops.io import read_json


@dataclass
class ModelChoice:
    """The training config actually used, and why: the tuned one or the fixed `train.model`."""

    cfg: TrainConfig
    tuned: dict[str, Any] | None
    reason: str

    @property
    def source(self) -> str:
        return f"tune:{self.tuned['study']}#{self.tuned['trial']}" if self.tuned else "train.model"


def apply_tuned(cfg: TrainConfig, tune_enabled: bool, *, data: PreparedData | None = None) -> ModelChoice:
    """Overlay `best_params.json` on the train params only while tuning is on and it fits the current data.

    Otherwise the fixed `train.model` (and lr, weight_decay, batch_size) is used and the reason says why:
    stale tuned params (from other data, or a disabled run restored from the cache) never win silently.
    """
    if not cfg.tuned_params:
        return ModelChoice(cfg, None, "train.tuned_params is null")
    if not tune_enabled:
        return ModelChoice(cfg, None, "tune.enabled is false")
    path = Path(cfg.tuned_params)
    if not path.exists():
        raise ConfigError(f"params.yaml: train.tuned_params = '{path}' does not exist; run `dvc repro tune`")
    try:
        tuned = read_json(path)
        merged = TrainConfig.model_validate({**cfg.model_dump(), **tuned["train"]}) if tuned.get("enabled") else cfg
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"{path}: not a valid tune result ({type(err).__name__}); rerun `dvc repro tune`") from None
    if not tuned.get("enabled"):
        return ModelChoice(cfg, None, f"{path} is from a run with tune disabled; run `dvc repro tune`")
    data = data or PreparedData(cfg.data_dir)
    data_hash, n_features = data.hash, data.meta.n_features
    if tuned.get("data_hash") != data_hash or tuned.get("n_features") != n_features:
        return ModelChoice(
            cfg, None,
            f"{path} was searched on other data ({tuned.get('n_features')} features, hash "
            f"{str(tuned.get('data_hash'))[:12]}; now {n_features}, {data_hash[:12]}); run `dvc repro tune`",
        )
    return ModelChoice(merged, tuned, f"best trial of study '{tuned['study']}' on this data")
