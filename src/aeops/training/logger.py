"""Lightning's MLflow logger, adapted to how users read a run in the MLflow UI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only


class EpochMLFlowLogger(MLFlowLogger):
    """Per-epoch curves with step = epoch (not the global batch count); no hyperparameter dump.

    Lightning would log the module's constructor arguments (`model_cfg/*`, every variant's knobs) a
    second time beside the effective config the stage logs itself, so `log_hyperparams` does nothing.
    """

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        values = dict(metrics)
        epoch = values.pop("epoch", None)  # Lightning adds it to every call: it becomes the x-axis instead
        if values and all(k.startswith("test/") for k in values):
            epoch = 0  # one number per run: step 0, drawn as a bar like evaluate's test metrics, not a lone point
        if values:
            super().log_metrics(values, int(epoch) if epoch is not None else step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        return None
