"""Stage `tune`: a resumable Optuna study, run by one or more worker processes on shared storage."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from optuna.trial import TrialState

from aeops.config import MlflowConfig, TuneConfig
from aeops.errors import AeopsError
from aeops.io import write_json
from aeops.tracking import flatten, mask_url, setup_experiment, tracking_uri

INTERRUPTED = "interrupted"  # user attr of trials left RUNNING by a killed run


def storage_url(cfg: TuneConfig) -> str | None:
    """`OPTUNA_STORAGE` wins, then `tune.storage`; None means the embedded journal file."""
    return os.environ.get("OPTUNA_STORAGE") or cfg.storage


def make_storage(cfg: TuneConfig) -> optuna.storages.BaseStorage | str:
    url = storage_url(cfg)
    if url:
        return url
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = Path(cfg.output_dir) / "storage" / "study.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_pruner(cfg: TuneConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(cfg.pruner_startup_trials, cfg.pruner_warmup_epochs)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cfg.max_epochs)
    if cfg.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def load_study(cfg: TuneConfig, worker: int = 0) -> optuna.Study:
    """Create or load the study; each worker seeds its sampler differently (no duplicate samples)."""
    seed = cfg.seed + worker
    sampler = optuna.samplers.TPESampler(seed=seed) if cfg.sampler == "tpe" else optuna.samplers.RandomSampler(seed)
    return optuna.create_study(
        storage=make_storage(cfg), sampler=sampler, pruner=make_pruner(cfg),
        study_name=cfg.study_name, direction="minimize", load_if_exists=True,
    )


def counted(study: optuna.Study) -> int:
    """Trials that count towards n_trials: running or finished, except those a killed run left behind.

    Queued (WAITING) trials do not count: a re-queued interrupted trial still has to run.
    """
    return sum(
        1 for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.WAITING and not t.user_attrs.get(INTERRUPTED)
    )


def fingerprint(cfg: TuneConfig) -> str:
    """What makes earlier trials comparable: search space, sampler, pruner, objective, budget, data."""
    from aeops.io import hash_dir

    keep = cfg.model_dump(include={"space", "sampler", "pruner", "pruner_startup_trials", "pruner_warmup_epochs",
                                   "objective", "seed", "max_epochs", "patience"})
    return hashlib.sha256(json.dumps([keep, hash_dir(cfg.data_dir)], sort_keys=True).encode()).hexdigest()


def open_study(cfg: TuneConfig) -> optuna.Study:
    """Load the study; an embedded study run with other params or data starts afresh.

    A shared (database) study with other params is refused: a new `tune.study_name` is needed.
    """
    key = fingerprint(cfg)
    study = load_study(cfg)
    old = study.user_attrs.get("fingerprint")
    if study.get_trials(deepcopy=False) and old != key:
        if storage_url(cfg) is not None:
            raise AeopsError(
                f"tune: study '{cfg.study_name}' on the shared storage was run with other params or data; "
                "set a new tune.study_name"
            )
        shutil.rmtree(Path(cfg.output_dir) / "storage", ignore_errors=True)
        study = load_study(cfg)
    study.set_user_attr("fingerprint", key)
    return study


def recover_interrupted(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a killed run as failed-interrupted and queue their params again."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)
    return len(stale)


def work(cfg: TuneConfig, mlflow_cfg: MlflowConfig, parent_run_id: str, worker: int = 0, progress: Any = None) -> None:
    """Ask for trials until the study holds n_trials (or the timeout passes); one trial at a time."""
    from aeops.tuning.trial import run_trial

    if mp.current_process().name != "MainProcess":
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.n_workers))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-trial banners
    study = load_study(cfg, worker)
    experiment_id = setup_experiment(mlflow_cfg)
    uri = tracking_uri(mlflow_cfg)
    lock = FileLock(str(Path(cfg.output_dir) / ".ask.lock"))
    deadline = study.user_attrs.get("started_at", time.time()) + cfg.timeout if cfg.timeout else None
    while True:
        with lock:  # count + ask atomically: workers together run exactly n_trials
            if counted(study) >= cfg.n_trials or (deadline and time.time() > deadline):
                return
            trial = study.ask()
        state, value, _ = run_trial(trial, cfg, uri, experiment_id, parent_run_id)
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        if progress is not None:
            progress()


def _worker_main(cfg: dict, mlflow_cfg: dict, parent_run_id: str, worker: int, gpus: int) -> None:
    if gpus:  # one trial per GPU: this process sees only its own (set before torch starts CUDA)
        os.environ["CUDA_VISIBLE_DEVICES"] = str(worker % gpus)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work(TuneConfig.model_validate(cfg), MlflowConfig.model_validate(mlflow_cfg), parent_run_id, worker)


def run_workers(cfg: TuneConfig, mlflow_cfg: MlflowConfig, parent_run_id: str, study: optuna.Study) -> None:
    """n_workers == 1: in this process; otherwise spawned processes, polled for the progress bar."""
    from rich.progress import Progress

    with Progress(disable=not cfg.progress_bar, transient=False) as bar:
        task = bar.add_task(f"tune {cfg.study_name}", total=cfg.n_trials, completed=_done(study))
        tick = lambda: bar.update(task, completed=_done(study))  # noqa: E731
        if cfg.n_workers == 1:
            work(cfg, mlflow_cfg, parent_run_id, 0, tick)
            return
        import torch

        gpus = torch.cuda.device_count() if cfg.accelerator in ("auto", "gpu", "cuda") else 0
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=_worker_main, args=(cfg.model_dump(), mlflow_cfg.model_dump(), parent_run_id, i, gpus))
            for i in range(cfg.n_workers)
        ]
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):
            tick()
            time.sleep(1.0)
        tick()
        failed = [p.exitcode for p in procs if p.exitcode != 0]
        if failed:
            raise AeopsError(f"tune: {len(failed)} worker process(es) exited with codes {failed}")


def _done(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished() and not t.user_attrs.get(INTERRUPTED))


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

    check_accelerator(cfg.accelerator, "tune.accelerator")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(cfg)
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
        return _summarise(study, cfg, client, parent)
    except BaseException as err:  # the parent run must not stay RUNNING forever
        client.set_terminated(parent, "KILLED" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "FAILED")
        raise


def join(cfg: TuneConfig, mlflow_cfg: MlflowConfig) -> int:
    """An extra worker (e.g. on another machine) joins a running study on shared storage.

    It runs trials until the study holds `n_trials`; the stage that started the study writes the
    outputs. Returns the number of trials this worker ran.
    """
    if storage_url(cfg) is None:
        raise AeopsError("tune worker: set OPTUNA_STORAGE (or tune.storage) to the study's shared storage URL")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(cfg, worker=os.getpid())
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent is None:
        raise AeopsError(f"tune worker: study '{cfg.study_name}' has not been started; run `dvc repro tune` first")
    work(cfg, mlflow_cfg, parent, worker=os.getpid() % 10_000)
    return sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker_pid") == os.getpid())


def _loggable(cfg: TuneConfig) -> dict[str, Any]:
    data = cfg.model_dump()
    url = storage_url(cfg)
    data["storage"] = mask_url(url) if url else f"journal:{Path(cfg.output_dir) / 'storage' / 'study.journal'}"
    return data


def _summarise(study: optuna.Study, cfg: TuneConfig, client: Any, parent: str) -> dict[str, Any]:
    from aeops.tuning.plots import write_study_plots

    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(INTERRUPTED)]
    states = {s.name: sum(1 for t in trials if t.state == s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        reasons = {t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL}
        raise AeopsError(f"tune: no trial completed ({states}); failures: {sorted(r for r in reasons if r)[:3]}")
    best = study.best_trial
    from aeops.data.prepared import load_meta
    from aeops.io import hash_dir
    from aeops.tuning.space import sample_train_overrides

    n_features = load_meta(cfg.data_dir)["n_features"]
    overrides = sample_train_overrides(optuna.trial.FixedTrial(best.params), cfg.space, n_features)
    result = {
        "enabled": True,
        # provenance: train uses these params only for the data (and feature count) they were searched on
        "data_hash": hash_dir(cfg.data_dir),
        "n_features": n_features,
        "fingerprint": fingerprint(cfg),
        "study": cfg.study_name,
        "objective": cfg.objective,
        "value": best.value,
        "trial": best.number,
        "train": overrides,
        "trials": states,
        "epochs_trained": sum(t.user_attrs.get("epochs", 0) for t in trials),
    }
    out = Path(cfg.output_dir)
    paths = write_study_plots(study, out / "plots")
    write_json(out / "best_params.json", result)
    client.log_metric(parent, "best_value", best.value)
    for name, n in states.items():
        client.log_metric(parent, f"trials_{name.lower()}", n)
    client.log_dict(parent, result, "best_params.json")
    for p in paths:
        client.log_artifact(parent, str(p), "plots")
    client.set_terminated(parent, "FINISHED")
    return result
