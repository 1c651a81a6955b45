"""The `tune` stage: pruning, a valid best config for train, resuming after a kill, parallel workers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import mlflow
import optuna
import pytest
import yaml
from conftest import REPO
from warm import python

from aeops.config import TuneConfig
from aeops.errors import AeopsError
from aeops.tracking import tracking_uri
from aeops.training.train import train
from aeops.tuning.storage import interrupted, load_study
from aeops.tuning.study import tune

pytestmark = pytest.mark.slow


def small_study(**kw) -> TuneConfig:
    """6 trials x 3 epochs on digits; the lr range reaches values too small to learn in 3 epochs."""
    base = {
        "n_trials": 6, "max_epochs": 3, "patience": 3, "progress_bar": False, "min_epoch_rows": 0,
        "pruner": "median", "pruner_startup_trials": 2, "pruner_warmup_epochs": 0,
        "space": {
            "depth": 1, "width": {"low": 16, "high": 64, "log": True}, "latent_dim": {"low": 2, "high": 8},
            "lr": {"low": 1e-5, "high": 3e-2, "log": True}, "batch_size": 128,
        },
    }
    return TuneConfig.model_validate(base | kw)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    skip = interrupted(study)
    return [t for t in study.get_trials() if t.state.is_finished() and t.number not in skip]


def test_study_prunes_and_train_uses_best_params(prepared, mlflow_cfg):
    cfg = small_study()
    result = tune(cfg, mlflow_cfg)
    assert result["trials"]["PRUNED"] >= 1
    assert sum(result["trials"].values()) == 6
    best = json.loads(open("tune/best_params.json").read())
    assert best == json.loads(json.dumps(result))
    assert {"optimization_history.png", "parallel_coordinate.png"} <= set(os.listdir("tune/plots"))

    # One parent run, one nested run per trial, each with its final state.
    client = mlflow.MlflowClient(tracking_uri(mlflow_cfg))
    runs = client.search_runs([client.get_experiment_by_name("aeops-test").experiment_id])
    parents = [r for r in runs if r.data.tags.get("study") == "aeops"]
    assert len(parents) == 1
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(nested) == 6
    assert sorted(r.data.tags["state"] for r in nested).count("PRUNED") == result["trials"]["PRUNED"]
    pruned = [r for r in nested if r.data.tags["state"] == "PRUNED"]  # the runs table shows it: status and name
    assert all(r.info.status == "KILLED" and r.info.run_name.endswith("(pruned)") for r in pruned)
    assert all(r.info.status == "FINISHED" for r in nested if r.data.tags["state"] == "COMPLETE")
    assert all("duration_s" in r.data.metrics for r in nested)
    # digit 9 is labelled: `auto` selects models by 1 - AUROC on validation normals vs held-out nines
    assert best["objective"] == "val_auroc" and 0.0 <= best["value"] < 0.5
    done = [r for r in nested if r.data.tags["state"] == "COMPLETE"]
    assert all(0 <= r.data.metrics["objective"] <= r.data.metrics["val/auroc_loss"] for r in done)  # best epoch

    # The best config is a valid training config, and train uses it.
    from conftest import tiny_train

    train_cfg = tiny_train().model_copy(update={"tuned_params": "tune/best_params.json"})
    train(train_cfg, mlflow_cfg, tune_enabled=True)
    run_json = json.loads(open("models/run.json").read())
    params = client.get_run(run_json["run_id"]).data.params
    assert params["train.lr"] == str(best["train"]["lr"])
    assert params["train.model.latent_dim"] == str(best["train"]["model"]["latent_dim"])
    assert params["train.max_epochs"] == "3"  # not tuned: from the train section


def test_disabled_tune_leaves_train_config_alone(prepared, mlflow_cfg):
    assert tune(small_study(enabled=False), mlflow_cfg) == {"enabled": False}
    from conftest import tiny_train

    train(tiny_train().model_copy(update={"tuned_params": "tune/best_params.json"}), mlflow_cfg)
    client = mlflow.MlflowClient(tracking_uri(mlflow_cfg))
    run = client.get_run(json.loads(open("models/run.json").read())["run_id"])
    assert run.data.params["train.model.latent_dim"] == "4" and "tuned_from" not in run.data.tags


def test_failed_trials_are_recorded_and_the_study_goes_on(prepared, mlflow_cfg):
    space = small_study().space.model_dump() | {"lr": {"choices": [1e-3, 1e9]}}
    cfg = small_study(n_trials=5, pruner="none", sampler="random", space=space)
    result = tune(cfg, mlflow_cfg)
    study = load_study(cfg)
    failed = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
    assert failed and result["trials"]["FAIL"] == len(failed)
    assert all("loss" in t.user_attrs["fail_reason"] for t in failed)
    assert result["trials"]["COMPLETE"] == 5 - len(failed)
    assert result["train"]["lr"] == 1e-3

    all_fail = small_study(n_trials=2, study_name="doomed", space=space | {"lr": 1e9})
    with pytest.raises(AeopsError, match="no trial completed"):
        tune(all_fail, mlflow_cfg)


def _run_tune(workdir, cfg: TuneConfig, *, warm: bool = True) -> subprocess.Popen:
    params = {"tune": cfg.model_dump(), "mlflow": {"experiment": "aeops-test"}}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    return subprocess.Popen(
        [python(warm=warm), str(REPO / "pipelines" / "tune.py")], cwd=workdir, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.timeout(120)  # before the fix this waited forever
def test_a_journal_lock_left_by_a_killed_writer_is_taken_over(workdir, monkeypatch, caplog):
    """A process killed inside a journal write leaves its lock behind; the next run takes it over after the grace period."""
    from aeops.tuning import storage

    cfg = small_study()
    load_study(cfg)
    journal = workdir / cfg.output_dir / "storage" / "study.journal"
    writer = subprocess.run(  # what a SIGKILL during append_logs leaves: the lock taken, never released
        [sys.executable, "-c", "from aeops.config import TuneConfig; from aeops.tuning.storage import make_storage; "
         "make_storage(TuneConfig())._backend._lock.acquire()"], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert writer.returncode == 0, writer.stderr[-2000:]
    assert journal.with_name("study.journal.lock").is_file()
    monkeypatch.setattr(storage, "JOURNAL_LOCK_GRACE_S", 3)
    monkeypatch.setattr(logging.getLogger("optuna"), "propagate", True)  # Optuna's own handler keeps it from caplog
    start = time.monotonic()
    study = load_study(cfg)
    study.set_user_attr("resumed", True)  # a write: it needs the lock
    assert load_study(cfg).user_attrs["resumed"] and time.monotonic() - start < 60
    assert "Forcibly releasing the lock file" in caplog.text  # the warning README promises

    # What an older aeops left instead: a symlink to the journal's relative path, dangling from where it lies.
    journal.with_name("study.journal.lock").symlink_to("tune/storage/study.journal")
    load_study(cfg).set_user_attr("resumed", False)
    assert not load_study(cfg).user_attrs["resumed"]


def test_killed_study_resumes_with_only_the_remaining_trials(prepared, workdir):
    cfg = small_study(n_trials=4, max_epochs=6, pruner="none")
    proc = _run_tune(workdir, cfg, warm=False)  # SIGKILLed below: the process itself, as a user's kill
    study = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # kill once 2 trials are done
        time.sleep(0.5)
        if (workdir / "tune/storage/study.journal").exists():
            study = load_study(cfg)
            if len(finished(study)) >= 2:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    study = load_study(cfg)
    before = {t.number: t.datetime_start for t in finished(study)}
    assert 2 <= len(before) < 4

    proc = _run_tune(workdir, cfg)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    study = load_study(cfg)
    done = finished(study)
    assert len(done) == 4
    assert {t.number: t.datetime_start for t in done if t.number in before} == before  # not re-run
    killed = [t for t in study.get_trials() if t.number in interrupted(study)]
    assert len(killed) <= 1  # the trial killed mid-way is retried with the same params
    for t in killed:  # those it had drawn: killed before its last suggest, the rest are drawn afresh
        assert any(t.params.items() <= d.params.items() for d in done if d.number > t.number)


def test_two_workers_share_one_study_exactly(prepared, workdir):
    cfg = small_study(n_trials=4, n_workers=2, pruner="none")
    # cold, as a user's run: started warm, the stage ran all 4 trials before its spawned worker had imported torch
    proc = _run_tune(workdir, cfg, warm=False)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    trials = load_study(cfg).get_trials()
    assert len(trials) == 4 and len({t.number for t in trials}) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker_pid"] for t in trials}) == 2  # both processes ran trials
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4  # no duplicate samples


def test_extra_worker_joins_a_study_on_shared_storage(prepared, workdir, mlflow_cfg):
    """The stage starts the study; a worker process joins it and runs exactly the trials still missing.

    The stage runs in this process (the pipeline's own subprocess is covered above); the worker is a process of its own.
    """
    storage = f"sqlite:///{workdir / 'optuna.db'}"
    cfg = small_study(n_trials=2, pruner="none", storage=storage)
    assert tune(cfg, mlflow_cfg)["trials"]["COMPLETE"] == 2
    bigger = cfg.model_copy(update={"n_trials": 4})  # the same search: the study goes on
    (workdir / "params.yaml").write_text(yaml.safe_dump({"tune": bigger.model_dump(), "mlflow": mlflow_cfg.model_dump()}))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    extra = subprocess.run(
        [sys.executable, "-m", "aeops.cli", "tune-worker"], cwd=workdir, env=env,
        capture_output=True, text=True, timeout=600,
    )
    assert extra.returncode == 0 and "tune worker: ran 2 trial(s)" in extra.stdout, extra.stderr[-2000:]
    again = tune(bigger, mlflow_cfg)  # nothing left to run: it only summarises
    trials = optuna.load_study(study_name="aeops", storage=storage).get_trials()
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker_pid"] for t in trials}) == 2
    assert again["trials"]["COMPLETE"] == 4
    assert json.loads((workdir / "tune" / "best_params.json").read_text())["trials"]["COMPLETE"] == 4


def test_tune_line_shows_the_auroc_of_a_minimised_auroc_objective():
    from aeops.cli import tune_line

    model = {"variant": "sparse", "architecture": "mlp", "latent_dim": 3}
    result = {"enabled": True, "objective": "val_auroc", "value": 0.25, "trial": 4, "train": {"model": model},
              "trials": {"COMPLETE": 5}, "epochs_trained": 40}
    line = tune_line(result, "tune")
    assert "val_auroc: val/auroc_loss=0.25000 (validation AUROC 0.7500)" in line and "sparse/mlp, latent 3" in line
    plain = tune_line(result | {"objective": "val_recon_loss", "value": 0.0123}, "tune")
    assert "val_recon_loss: val/recon_loss=0.01230;" in plain and "AUROC" not in plain
    assert tune_line({"enabled": False}, "tune").startswith("tune: disabled")


def test_worker_without_shared_storage_is_refused(workdir, capsys):
    from aeops.cli import main

    (workdir / "params.yaml").write_text("tune:\n  n_trials: 2\n")
    assert main(["tune-worker"]) == 2
    assert "OPTUNA_STORAGE" in capsys.readouterr().err


def test_a_worker_that_cannot_get_the_ask_lock_fails_in_one_line(workdir, mlflow_cfg, monkeypatch):
    """A lock another process never releases must end the worker with an error, not hang it."""
    from aeops.tuning import workers

    cfg = small_study(n_trials=2)
    lock = workdir / cfg.output_dir / ".ask.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time; from filelock import FileLock; l = FileLock({str(lock)!r}); l.acquire(); "
         "print('held', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(workers, "ASK_LOCK_TIMEOUT_S", 1)
        with pytest.raises(AeopsError, match=r"\.ask\.lock stayed locked for 1 s"):
            workers.work(cfg, mlflow_cfg, parent_run_id="none")
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_trial_cut_off_at_the_end_is_rerun_with_its_params(prepared, mlflow_cfg):
    from aeops.tuning.space import sample_train_overrides

    cfg = small_study(n_trials=3, pruner="none")
    tune(cfg.model_copy(update={"n_trials": 2}), mlflow_cfg)
    study = load_study(cfg)
    cut = study.ask()  # a run killed during its last trial leaves it RUNNING
    sample_train_overrides(cut, cfg.space)
    tune(cfg, mlflow_cfg)
    study = load_study(cfg)
    done = finished(study)
    assert len(done) == 3
    assert interrupted(study) == {cut.number} and study.get_trials()[cut.number].state.name == "FAIL"
    assert done[-1].params == study.get_trials()[cut.number].params  # retried, same params


def test_changed_search_params_start_a_fresh_study(prepared, mlflow_cfg):
    cfg = small_study(n_trials=2, pruner="none")
    first = tune(cfg, mlflow_cfg)
    again = tune(cfg, mlflow_cfg)  # same params: nothing left to run, same answer
    assert again["trial"] == first["trial"] and len(load_study(cfg).get_trials()) == 2
    changed = cfg.model_copy(update={"max_epochs": 2})
    tune(changed, mlflow_cfg)
    trials = load_study(changed).get_trials()
    assert len(trials) == 2 and all(len(t.intermediate_values) <= 2 for t in trials)


def test_study_plots_are_byte_stable(tmp_path):
    """The importances (fANOVA's random forest) are seeded: the same study writes the same PNG bytes."""
    from aeops.tuning.plots import write_study_plots

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("a", 0, 1) ** 2 + t.suggest_int("b", 1, 4), n_trials=12)
    first = write_study_plots(study, tmp_path / "one", seed=3)
    second = write_study_plots(study, tmp_path / "two", seed=3)
    assert [p.name for p in first] == ["optimization_history.png", "param_importances.png", "parallel_coordinate.png"]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
