"""Stage `tune`: run (or resume) the study, track it as one MLflow parent run, write best_params.json."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from aeops.config import MlflowConfig, TuneConfig
from aeops.data.prepared import PreparedData
from aeops.errors import AeopsError
from aeops.io import write_json
from aeops.tracking import flatten, mask_url, setup_experiment, tracking_uri
from aeops.tuning.storage import fingerprint, interrupted, open_study, recover_interrupted, storage_url


def tune(cfg: TuneConfig, mlflow_cfg: MlflowConfig) -> dict[str, Any]:
    """Run (or resume) the study; write `best_params.json` and plots; log a parent MLflow run."""
    out = Path(cfg.output_dir)
    if not cfg.enabled:  # every DVC out exists, so `dvc repro` with tune off works
        result = {"enabled": False}
        for folder, note in (("plots", "tune.enabled is false: no study was run.\n"),
                             ("storage", "tune.enabled is false: no study is stored.\n")):
            (out / folder).mkdir(parents=True, exist_ok=True)
            (out / folder / "README.txt").write_text(note)
        write_json(out / "best_params.json", result)
        return result
    import mlflow

    from aeops.training.train import check_accelerator
    from aeops.tuning.workers import run_workers  # Lightning: imported only when a study runs (~9 s)

    check_accelerator(cfg.accelerator, "tune.accelerator")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = PreparedData(cfg.data_dir)  # its hash is taken once: the study's fingerprint and best_params.json
    study = open_study(cfg, data_hash=data.hash)
    if storage_url(cfg) is None:  # embedded journal: nobody else can be running its trials
        recover_interrupted(study)
    study.set_user_attr("started_at", time.time())  # tune.timeout counts from this run's start
    experiment_id = setup_experiment(mlflow_cfg)
    parent = study.user_attrs.get("mlflow_parent_run_id")
    client = mlflow.MlflowClient(tracking_uri(mlflow_cfg))
    if parent is None:
        parent = client.create_run(
            experiment_id, run_name=f"study-{cfg.study_name}", tags={"aeops.stage": "tune", "study": cfg.study_name}
        ).info.run_id
        study.set_user_attr("mlflow_parent_run_id", parent)
        client.log_batch(parent, params=[mlflow.entities.Param(k, v) for k, v in flatten(_loggable(cfg), "tune.").items()])
    try:
        run_workers(cfg, mlflow_cfg, parent, study)
        return _summarise(study, cfg, client, parent, data=data)
    except BaseException as err:  # the parent run must not stay RUNNING forever
        client.set_terminated(parent, "KILLED" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "FAILED")
        raise


def _loggable(cfg: TuneConfig) -> dict[str, Any]:
    data = cfg.model_dump()
    url = storage_url(cfg)
    data["storage"] = mask_url(url) if url else f"journal:{Path(cfg.output_dir) / 'storage' / 'study.journal'}"
    return data


def _summarise(study: optuna.Study, cfg: TuneConfig, client: Any, parent: str, *, data: PreparedData) -> dict[str, Any]:
    from aeops.tuning.plots import write_study_plots

    skip = interrupted(study)
    trials = [t for t in study.get_trials(deepcopy=False) if t.number not in skip]
    states = {s.name: sum(1 for t in trials if t.state == s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        reasons = {t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL}
        raise AeopsError(f"tune: no trial completed ({states}); failures: {sorted(r for r in reasons if r)[:3]}")
    best = study.best_trial
    from aeops.tuning.objectives import resolve_objective
    from aeops.tuning.space import sample_train_overrides

    n_features = data.meta.n_features
    overrides = sample_train_overrides(optuna.trial.FixedTrial(best.params), cfg.space, data.meta.feature_count)
    result = {
        "enabled": True,
        # provenance: train uses these params only for the data (and feature count) they were searched on
        "data_hash": data.hash,
        "n_features": n_features,
        "fingerprint": fingerprint(cfg, data_hash=data.hash),
        "study": cfg.study_name,
        "objective": resolve_objective(cfg.objective, cfg.data_dir),
        "value": best.value,
        "trial": best.number,
        "train": overrides,
        "trials": states,
        "epochs_trained": sum(t.user_attrs.get("epochs", 0) for t in trials),
    }
    out = Path(cfg.output_dir)
    paths = write_study_plots(study, out / "plots", seed=cfg.seed)
    write_json(out / "best_params.json", result)
    client.log_metric(parent, "best_value", best.value)
    for name, n in states.items():
        client.log_metric(parent, f"trials_{name.lower()}", n)
    client.log_dict(parent, result, "best_params.json")
    for p in paths:
        client.log_artifact(parent, str(p), "plots")
    client.set_terminated(parent, "FINISHED")
    return result
