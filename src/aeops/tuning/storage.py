"""The Optuna study on its storage: journal file or database, pruner, fingerprint, interrupted trials.

Public Optuna APIs only: interrupted trials are failed with `study.tell` and remembered by number
in a study user attribute (trials of a killed run cannot be given user attributes from outside).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import optuna
from optuna.trial import TrialState

from aeops.config import TuneConfig
from aeops.errors import AeopsError

JOURNAL_LOCK_GRACE_S = 30  # a journal lock untouched this long belongs to a killed process: taken over
INTERRUPTED = "interrupted_trials"  # study user attr: numbers of trials left RUNNING by a killed run


def storage_url(cfg: TuneConfig) -> str | None:
    """`OPTUNA_STORAGE` wins, then `tune.storage`; None means the embedded journal file."""
    return os.environ.get("OPTUNA_STORAGE") or cfg.storage


def make_storage(cfg: TuneConfig) -> optuna.storages.BaseStorage | str:
    url = storage_url(cfg)
    if url:
        return url
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    path = (Path(cfg.output_dir) / "storage" / "study.journal").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    # A plain lock file, not Optuna's default symlink to the journal: with a relative path that link dangled, Optuna
    # could not read the lock's age, and a lock left by a process killed mid-write blocked every later run forever.
    stale = path.with_name(path.name + ".lock")
    if stale.is_symlink() and not stale.exists():  # such a dangling link (older aeops): nothing can hold it now
        stale.unlink()
    lock = JournalFileOpenLock(str(path), grace_period=JOURNAL_LOCK_GRACE_S)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


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


def interrupted(study: optuna.Study) -> set[int]:
    """Numbers of the trials a killed run left behind (failed, and queued again with their params)."""
    return set(study.user_attrs.get(INTERRUPTED, []))


def counted(study: optuna.Study) -> int:
    """Trials that count towards n_trials: running or finished, except those a killed run left behind.

    Queued (WAITING) trials do not count: a re-queued interrupted trial still has to run.
    """
    skip = interrupted(study)
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING and t.number not in skip)


def fingerprint(cfg: TuneConfig, *, data_hash: str | None = None) -> str:
    """What makes earlier trials comparable: search space, sampler, pruner, objective, budget, data
    (`data_hash`: the prepared data's hash where the caller has it, else computed)."""
    from aeops.io import hash_dir

    keep = cfg.model_dump(include={"space", "sampler", "pruner", "pruner_startup_trials", "pruner_warmup_epochs",
                                   "objective", "seed", "max_epochs", "patience", "max_train_rows", "min_epoch_rows"})
    data_hash = data_hash or hash_dir(cfg.data_dir)
    return hashlib.sha256(json.dumps([keep, data_hash], sort_keys=True).encode()).hexdigest()


def open_study(cfg: TuneConfig, *, data_hash: str | None = None) -> optuna.Study:
    """Load the study; an embedded study run with other params or data starts afresh.

    A shared (database) study with other params is refused: a new `tune.study_name` is needed.
    """
    key = fingerprint(cfg, data_hash=data_hash)
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
    """Fail the trials a killed run left RUNNING, remember them, and queue their params again."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if stale:
        study.set_user_attr(INTERRUPTED, sorted(interrupted(study) | {t.number for t in stale}))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(t.params, skip_if_exists=False)
    return len(stale)
