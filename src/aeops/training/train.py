"""Stage `train`: fit an autoencoder with a Lightning Trainer built from params; track it in MLflow."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities import rank_zero_only

from aeops.config import MlflowConfig, TrainConfig
from aeops.data.prepared import PreparedData
from aeops.errors import ConfigError, TrainingDiverged
from aeops.io import write_json
from aeops.models.lightning import LitAutoencoder
from aeops.tracking import git_commit, mask_url, tracking_uri
from aeops.training.choice import apply_tuned
from aeops.training.datamodule import PreparedDataModule
from aeops.training.resume import STATE, RecordRun, fingerprint, resume_point
from aeops.training.run_log import log_training_run, training_logger
from aeops.training.threads import set_threads


class ProgressBar(RichProgressBar):
    """Lightning's rich bar without `v_num` (the MLflow run id's tail, which means nothing there)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


def build_trainer(
    cfg: TrainConfig, logger: Any, ckpt_dir: Path | None, callbacks: list[Any] | None = None
) -> L.Trainer:
    """Everything from params: a machine with N GPUs trains with DDP by changing params only.

    `ckpt_dir=None` trains without checkpoints (search trials).
    """
    callbacks = [
        *(callbacks or []),
        EarlyStopping(monitor="val/loss", mode="min", patience=cfg.patience, check_finite=True),
    ]
    if ckpt_dir is not None:  # the best epoch first: trainer.checkpoint_callback and ckpt_path="best" use it
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/loss", mode="min",
                                         enable_version_counter=False))
        # last.ckpt after every epoch (save_last=True writes it only when the best improves, so a resumed run
        # would repeat, and log twice, every epoch since the last improvement)
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                                         enable_version_counter=False))
    if cfg.progress_bar:
        callbacks.append(ProgressBar())
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=cfg.precision,
        max_epochs=cfg.max_epochs,
        gradient_clip_val=cfg.gradient_clip_val or None,
        deterministic=cfg.deterministic,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=ckpt_dir is not None,
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        inference_mode=False,  # the contractive penalty differentiates during validation too
        log_every_n_steps=1,
        default_root_dir=cfg.output_dir,
    )


def local_processes(cfg: TrainConfig) -> int:
    """Training processes on this machine: torchrun's LOCAL_WORLD_SIZE, or the CPU devices Lightning spawns."""
    if os.environ.get("LOCAL_WORLD_SIZE", "").isdigit():
        return int(os.environ["LOCAL_WORLD_SIZE"])
    return cfg.devices if cfg.accelerator == "cpu" and isinstance(cfg.devices, int) else 1


def check_accelerator(accelerator: str, key: str) -> None:
    """A GPU asked for on a machine without one: one line naming the fix (not Lightning's traceback)."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"params.yaml: {key} = '{accelerator}' but no GPU found: use {key}=cpu or auto")


def train(cfg: TrainConfig, mlflow_cfg: MlflowConfig, tune_enabled: bool = False) -> dict[str, Any]:
    """Fit, test on the best checkpoint, log the run; rank 0 writes `run.json` and returns the metrics.

    `tune_enabled` is `tune.enabled` (the CLI passes it): only then may tuned params replace `train.model`.
    """
    check_accelerator(cfg.accelerator, "train.accelerator")
    prepared = PreparedData(cfg.data_dir)  # meta.json and the data hash, read once
    choice = apply_tuned(cfg, tune_enabled, data=prepared)
    cfg = choice.cfg
    set_threads(cfg.num_threads, processes=local_processes(cfg))
    meta = prepared.meta
    trim = robust_share(cfg, labelled=meta.has_anomaly)
    if rank_zero_only.rank == 0:
        m = cfg.model
        members = f" x{cfg.ensemble}" if cfg.ensemble > 1 else ""
        robust = (f"; robust: each batch leaves out its worst {trim:.0%} after epoch {cfg.robust_warmup} (validation: in every "
                  "epoch)") if trim else ""
        print(f"train: {m.variant}/{m.architecture} z{m.latent_dim}{members}, model config from {choice.source} "
              f"({choice.reason}){robust}", file=sys.stderr, flush=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.model.architecture == "conv" and not meta.image_shape:
        raise ConfigError("params.yaml: train.model.architecture = 'conv' needs image data "
                          "(prepare.source digits, mnist, fashion_mnist or image_folder); use 'mlp' for tables")
    out_dir = Path(cfg.output_dir)
    ckpt_dir = out_dir / "checkpoints"
    data_hash = prepared.hash
    key = fingerprint(cfg, data_hash)
    resume_from, run_id = resume_point(ckpt_dir, key)
    logger = training_logger(cfg, mlflow_cfg, choice, run_id)
    lit = LitAutoencoder(
        model_cfg=cfg.model.model_dump(),
        n_features=meta.n_features,
        image_shape=meta.image_shape,
        unit_interval=meta.unit_interval,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        members=cfg.ensemble,
        layout=meta.layout,
        trim=trim,
        trim_warmup=cfg.robust_warmup,
    )
    data = PreparedDataModule(cfg.data_dir, cfg.batch_size, num_workers=cfg.num_workers, min_epoch_rows=cfg.min_epoch_rows,
                              max_epoch_rows=cfg.max_epoch_rows)
    trainer = build_trainer(cfg, logger, ckpt_dir, [RecordRun(ckpt_dir, key)])

    start_epoch = _epoch_of(resume_from)
    start = time.perf_counter()
    try:
        trainer.fit(lit, datamodule=data, ckpt_path=resume_from)
    except FloatingPointError as err:  # raised at the end of an epoch whose loss was NaN/inf
        raise TrainingDiverged(f"train: {err}") from None  # Lightning has already marked the run FAILED
    except (KeyboardInterrupt, SystemExit):  # Ctrl+C or SIGTERM: Lightning says FAILED, it was KILLED
        if trainer.is_global_zero:
            logger.experiment.set_terminated(logger.run_id, "KILLED")
        raise
    fit_seconds = time.perf_counter() - start
    best = trainer.checkpoint_callback.best_model_path  # the first ModelCheckpoint's (the second keeps last.ckpt)
    test = trainer.test(lit, datamodule=data, ckpt_path=best, verbose=False)[0]
    if not trainer.is_global_zero:
        return {}

    metrics = {
        **{k: float(v) for k, v in test.items()},
        "best_val_loss": float(trainer.checkpoint_callback.best_model_score),
        "epochs": int(trainer.current_epoch),
        "resumed_from_epoch": start_epoch,
        "fit_seconds": round(fit_seconds, 2),
        "n_parameters": sum(p.numel() for p in lit.model.parameters()),
    }
    info = _run_info(trainer, logger, mlflow_cfg=mlflow_cfg, data_hash=data_hash, metrics=metrics)
    log_training_run(lit, cfg, meta=meta, info=info, logger=logger)
    # The DVC metrics file holds reproducible numbers only (wall time lives in MLflow and run.json).
    write_json(cfg.metrics_file, {k: v for k, v in metrics.items() if k != "fit_seconds"})
    write_json(out_dir / "run.json", info)
    (ckpt_dir / STATE).unlink(missing_ok=True)  # complete: a later run starts afresh
    return metrics


def robust_share(cfg: TrainConfig, *, labelled: bool) -> float:
    """The share of each batch robust training leaves out: train.robust_share where robust (auto: where no
    anomaly protocol says which training rows are normal, `labelled` False), else 0."""
    on = cfg.robust if cfg.robust != "auto" else not labelled
    return cfg.robust_share if on else 0.0


def _run_info(trainer: L.Trainer, logger: Any, *, mlflow_cfg: MlflowConfig, data_hash: str,
              metrics: dict[str, Any]) -> dict[str, Any]:
    """models/run.json: the MLflow run, the best checkpoint (relative when inside the project) and provenance."""
    best = Path(trainer.checkpoint_callback.best_model_path)
    return {
        "run_id": logger.run_id,
        "experiment_id": logger.experiment_id,
        "tracking_uri": mask_url(tracking_uri(mlflow_cfg)),
        "best_checkpoint": str(best.relative_to(Path.cwd())) if best.is_relative_to(Path.cwd()) else str(best),
        "data_hash": data_hash,
        "git_commit": git_commit(),
        "metrics": metrics,
    }


def _epoch_of(checkpoint: str | None) -> int:
    """Epochs completed in a checkpoint (0 for a fresh run)."""
    if checkpoint is None:
        return 0
    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]) + 1
