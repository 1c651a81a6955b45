"""Trial workers: one process or several (one trial per GPU), and extra workers on other machines."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock, Timeout
from optuna.trial import TrialState

from aeops.config import MlflowConfig, TuneConfig
from aeops.errors import AeopsError
from aeops.tracking import setup_experiment, tracking_uri
from aeops.tuning.storage import counted, interrupted, load_study, storage_url

ASK_LOCK_TIMEOUT_S = 300  # the ask lock is held for a count and an ask: seconds at most


def work(cfg: TuneConfig, mlflow_cfg: MlflowConfig, *, parent_run_id: str, worker: int = 0, progress: Any = None) -> None:
    """Ask for trials until the study holds n_trials (or the timeout passes); one trial at a time."""
    from aeops.tuning.trial import run_trial

    if mp.current_process().name != "MainProcess":
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.n_workers))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-trial banners
    study = load_study(cfg, worker)
    experiment_id = setup_experiment(mlflow_cfg)
    uri = tracking_uri(mlflow_cfg)
    lock = FileLock(str(Path(cfg.output_dir) / ".ask.lock"), timeout=ASK_LOCK_TIMEOUT_S)
    deadline = study.user_attrs.get("started_at", time.time()) + cfg.timeout if cfg.timeout else None
    while True:
        try:
            with lock:  # count + ask atomically: workers together run exactly n_trials
                if counted(study) >= cfg.n_trials or (deadline and time.time() > deadline):
                    return
                trial = study.ask()
        except Timeout:  # held for seconds at most: a waiter that never gets it must fail, not hang
            raise AeopsError(f"tune: {lock.lock_file} stayed locked for {ASK_LOCK_TIMEOUT_S} s; if no other tune worker "
                             "is running, delete it and rerun") from None
        state, value, _ = run_trial(trial, cfg, tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent_run_id)
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        if progress is not None:
            progress()


def _worker_main(cfg: dict, mlflow_cfg: dict, *, parent_run_id: str, worker: int, gpus: int) -> None:
    if gpus:  # one trial per GPU: this process sees only its own (set before torch starts CUDA)
        os.environ["CUDA_VISIBLE_DEVICES"] = str(worker % gpus)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from aeops.quiet import quiet

    quiet()
    work(TuneConfig.model_validate(cfg), MlflowConfig.model_validate(mlflow_cfg), parent_run_id=parent_run_id, worker=worker)


def run_workers(cfg: TuneConfig, mlflow_cfg: MlflowConfig, parent_run_id: str, study: optuna.Study) -> None:
    """n_workers == 1: in this process; otherwise worker processes, polled for the progress bar."""
    from rich.progress import Progress

    with Progress(disable=not cfg.progress_bar, transient=False) as bar:
        task = bar.add_task(f"tune {cfg.study_name}", total=cfg.n_trials, completed=_done(study))
        tick = lambda: bar.update(task, completed=_done(study))  # noqa: E731
        if cfg.n_workers == 1:
            work(cfg, mlflow_cfg, parent_run_id=parent_run_id, worker=0, progress=tick)
            return
        import torch

        gpus = torch.cuda.device_count() if cfg.accelerator in ("auto", "gpu", "cuda") else 0
        ctx = _context(gpus)
        procs = [
            ctx.Process(target=_worker_main, args=(cfg.model_dump(), mlflow_cfg.model_dump()),
                        kwargs={"parent_run_id": parent_run_id, "worker": i, "gpus": gpus})
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


def _context(gpus: int) -> mp.context.BaseContext:
    """CPU workers fork from one server that has imported torch, Lightning and MLflow once (a spawned worker
    pays those imports itself: seconds per worker); GPU workers are spawned, each choosing its device before
    CUDA starts."""
    if gpus:
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["aeops.tuning.trial"])
    return ctx


def _done(study: optuna.Study) -> int:
    skip = interrupted(study)
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.number not in skip)


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
    work(cfg, mlflow_cfg, parent_run_id=parent, worker=os.getpid() % 10_000)
    return sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker_pid") == os.getpid())
