"""One search trial: train a sampled config with pruning; track it as a nested MLflow run."""

from __future__ import annotations

import os
import time
from typing import Any

import lightning as L
import optuna
from optuna_integration import PyTorchLightningPruningCallback

from aeops.config import TrainConfig, TuneConfig
from aeops.data.prepared import load_meta
from aeops.models.lightning import LitAutoencoder
from aeops.training.datamodule import PreparedDataModule
from aeops.training.logger import EpochMLFlowLogger
from aeops.training.train import build_trainer
from aeops.tuning.objectives import OBJECTIVE_METRIC, objective_callbacks, resolve_objective
from aeops.tuning.space import sample_train_overrides


class EpochValues(L.Callback):
    """The objective at each validation end, as the pruning callback reports it (no private Optuna API)."""

    def __init__(self, monitor: str):
        self.monitor, self.values = monitor, []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if not trainer.sanity_checking and value is not None:
            self.values.append(float(value))


def trial_train_config(cfg: TuneConfig, overrides: dict[str, Any]) -> TrainConfig:
    """The training config of a trial: one device, no checkpoints, the tune section's epochs."""
    return TrainConfig.model_validate(
        {
            "seed": cfg.seed,
            "max_epochs": cfg.max_epochs,
            "min_epoch_rows": cfg.min_epoch_rows,
            "patience": cfg.patience,
            "accelerator": cfg.accelerator,
            "devices": 1,
            "progress_bar": False,
            "data_dir": cfg.data_dir,
            **overrides,
        }
    )


def run_trial(
    trial: optuna.Trial, cfg: TuneConfig, *, tracking_uri: str, experiment_id: str, parent_run_id: str
) -> tuple[optuna.trial.TrialState, float | None, dict[str, Any]]:
    """Train one sampled config; return (state, objective value, info) — never raises for a bad trial."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    run = client.create_run(
        experiment_id,
        run_name=f"trial-{trial.number}",
        tags={"mlflow.parentRunId": parent_run_id, "aeops.stage": "tune", "trial": str(trial.number)},
    )
    run_id = run.info.run_id
    start = time.perf_counter()
    objective = resolve_objective(cfg.objective, cfg.data_dir)
    monitor = OBJECTIVE_METRIC[objective]
    info: dict[str, Any] = {}
    record = EpochValues(monitor)
    try:
        detection = objective_callbacks(objective, cfg.data_dir, cfg.seed)
        meta = load_meta(cfg.data_dir)
        overrides = sample_train_overrides(trial, cfg.space, meta.feature_count)
        train_cfg = trial_train_config(cfg, overrides)
        for key, value in trial.params.items():
            client.log_param(run_id, key, value)
        L.seed_everything(cfg.seed + trial.number, workers=True, verbose=False)
        lit = LitAutoencoder(
            train_cfg.model.model_dump(), meta.n_features, image_shape=meta.image_shape, unit_interval=meta.unit_interval,
            lr=train_cfg.lr, weight_decay=train_cfg.weight_decay, layout=meta.layout,
        )
        logger = EpochMLFlowLogger(tracking_uri=tracking_uri, run_id=run_id)
        pruning = PyTorchLightningPruningCallback(trial, monitor=monitor)
        # the objective is logged first, then recorded, then pruned on (pruning raises)
        trainer = build_trainer(train_cfg, logger, None, [*detection, record, pruning])
        data = PreparedDataModule(
            cfg.data_dir,
            train_cfg.batch_size,
            num_workers=0,
            max_train_rows=cfg.max_train_rows,
            seed=cfg.seed,
            min_epoch_rows=cfg.min_epoch_rows,
        )
        try:
            trainer.fit(lit, datamodule=data)
        except (KeyboardInterrupt, SystemExit):  # the whole tune is being stopped: this run was killed
            client.set_terminated(run_id, "KILLED")
            raise
        if not record.values:
            raise RuntimeError(f"no {monitor} was reported")
        value = min(record.values)
        state = optuna.trial.TrialState.COMPLETE
        info["overrides"] = overrides
    except optuna.TrialPruned:
        state, value = optuna.trial.TrialState.PRUNED, None
    except Exception as err:  # a failed trial is recorded with its reason; the study goes on
        state, value = optuna.trial.TrialState.FAIL, None
        info["fail_reason"] = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        trial.set_user_attr("fail_reason", info["fail_reason"])
        client.set_tag(run_id, "fail_reason", info["fail_reason"])
    duration = time.perf_counter() - start
    epochs = len(record.values)
    trial.set_user_attr("duration_s", round(duration, 3))
    trial.set_user_attr("worker_pid", os.getpid())
    trial.set_user_attr("epochs", epochs)
    client.log_metric(run_id, "duration_s", duration)
    client.log_metric(run_id, "epochs", epochs)
    if value is not None:
        client.log_metric(run_id, "objective", value)
    client.set_tag(run_id, "state", state.name)
    # the runs table shows the status and the name: a pruned trial reads "Killed", "trial-7 (pruned)"
    status = {optuna.trial.TrialState.FAIL: "FAILED", optuna.trial.TrialState.PRUNED: "KILLED"}.get(state, "FINISHED")
    if state != optuna.trial.TrialState.COMPLETE:
        client.set_tag(run_id, "mlflow.runName", f"trial-{trial.number} ({state.name.lower()})")
    client.set_terminated(run_id, status)
    return state, value, info
