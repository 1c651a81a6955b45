"""The training run in MLflow: a name that says data and model, the effective config, lineage, plots."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import rank_zero_only

from aeops import __version__
from aeops.config import MlflowConfig, TrainConfig
from aeops.data.prepared import Meta, eval_rows, load_split
from aeops.io import read_json
from aeops.tracking import (
    data_label,
    effective_model,
    flatten,
    lineage_tags,
    log_dataset,
    loss_curves,
    run_name,
    setup_experiment,
    tracking_uri,
)
from aeops.training.logger import EpochMLFlowLogger

if TYPE_CHECKING:
    from aeops.models.lightning import LitAutoencoder
    from aeops.training.choice import ModelChoice

PLOT_ROWS = 10_000  # test rows the run's plots are drawn from (the first ones; fewer for wide images)


def prepare_params(data_dir: str | Path) -> dict[str, Any]:
    """The `prepare` section the data was made with (empty for data prepared elsewhere)."""
    path = Path(data_dir) / "params.json"
    return read_json(path) if path.exists() else {}


def training_logger(cfg: TrainConfig, mlflow_cfg: MlflowConfig, choice: ModelChoice,
                    run_id: str | None) -> EpochMLFlowLogger | bool:
    """The run's MLflow logger (continuing an interrupted run if the store still has it).

    Only rank 0 talks to MLflow: other ranks (started together by torchrun) must not race to
    create the tracking store, so they get no logger at all (False).
    """
    if rank_zero_only.rank != 0:
        return False
    setup_experiment(mlflow_cfg)
    tuned = choice.tuned
    return EpochMLFlowLogger(
        experiment_name=mlflow_cfg.experiment,
        tracking_uri=tracking_uri(mlflow_cfg),
        run_id=run_id if run_id and _run_exists(mlflow_cfg, run_id) else None,
        run_name=run_name(prepare_params(cfg.data_dir), cfg.model.model_dump(), cfg.ensemble),
        tags={
            "aeops.stage": "train", "model_config_source": choice.source, "model_config_reason": choice.reason,
            **({"tuned_from": f"{tuned['study']}#{tuned['trial']}"} if tuned else {}),
        },
    )


def _run_exists(mlflow_cfg: MlflowConfig, run_id: str) -> bool:
    """The interrupted run can be continued only if this tracking store still has it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.MlflowClient(tracking_uri(mlflow_cfg)).get_run(run_id)
        return True
    except MlflowException:
        return False


def effective_params(cfg: TrainConfig, prepare: dict[str, Any]) -> dict[str, str]:
    """`train.*` (only the variant and architecture in use) and `prepare.*`: what made this model."""
    train = cfg.model_dump(exclude={"progress_bar", "num_workers"})  # display knobs: a resumed run may change them
    train["model"] = effective_model(train["model"])
    return {**flatten(train, "train."), **flatten(prepare, "prepare.")}


def log_training_run(lit: LitAutoencoder, cfg: TrainConfig, *, meta: Meta, info: dict, logger: EpochMLFlowLogger) -> None:
    """Params, lineage, dataset input, data profile and plots in the training run.

    The test losses were logged once by Lightning; constants of the model are params, not metrics.
    """
    import mlflow

    from aeops import figures

    client, run_id = logger.experiment, logger.run_id
    prepare = prepare_params(cfg.data_dir)
    metrics = info["metrics"]
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params({**effective_params(cfg, prepare), "n_parameters": str(metrics["n_parameters"])})
        mlflow.log_metrics({"val/best_loss": metrics["best_val_loss"], "epochs_trained": metrics["epochs"],
                            "fit_seconds": metrics["fit_seconds"]})
        mlflow.set_tags({
            **lineage_tags(),
            "dvc_stage": "train",
            "data": data_label(prepare),
            "data_hash": info["data_hash"],
            "variant": cfg.model.variant,
            "architecture": cfg.model.architecture,
            "resumed_from_epoch": str(metrics["resumed_from_epoch"]),
            "aeops_version": __version__,
        })
        log_dataset(cfg.data_dir, prepare, info["data_hash"])
        profile = read_json(Path(cfg.data_dir) / "profile.json")
        dropped = profile.get("dropped_columns") or {}
        mlflow.set_tag("dropped_columns", ", ".join(f"{k} ({v})" for k, v in dropped.items()) or "none")
        if profile.get("column_roles"):  # tables: every column's role (the reasons are in data/meta.json)
            roles = ", ".join(f"{k}: {v}" for k, v in profile["column_roles"].items())
            mlflow.set_tag("column_roles", roles if len(roles) <= 5000 else roles[:4990] + " …")
        mlflow.log_dict(profile, "data/profile.json")
        mlflow.log_dict(read_json(Path(cfg.data_dir) / "meta.json"), "data/meta.json")  # every key, as prepare wrote it

        model = lit.model.cpu().eval()
        test = load_split(cfg.data_dir, "test", lazy=True)
        rows = min(PLOT_ROWS, eval_rows(test.x.shape[1]))
        test = test.take(slice(rows))
        with torch.no_grad():
            x = torch.from_numpy(test.x)
            codes, recon = model.encode(x).numpy(), model.reconstruct(x).numpy()
        history = loss_curves(client, run_id)
        errors = ((recon.reshape(len(x), -1) - test.x.reshape(len(x), -1)) ** 2).mean(1)
        with tempfile.TemporaryDirectory() as tmp:
            shape = tuple(meta.image_shape) if meta.image_shape else None
            for path in (
                figures.plot_loss_curves(Path(tmp) / "loss_curves.png", history),
                figures.plot_reconstructions(
                    Path(tmp) / "reconstructions.png", test.x, recon=recon, image_shape=shape, errors=errors
                ),
                figures.plot_latent_2d(
                    Path(tmp) / "latent_2d.png", codes, labels=test.labels, seed=cfg.seed, is_anomaly=test.is_anomaly
                ),
            ):
                mlflow.log_artifact(str(path), "plots")
