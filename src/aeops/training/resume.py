"""Resume an interrupted training run: same config and data → continue from `last.ckpt`, same MLflow run."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from aeops.config import TrainConfig
from aeops.io import read_json, write_json

STATE = "resume.json"


def fingerprint(cfg: TrainConfig, data_hash: str) -> str:
    """What makes a checkpoint reusable: every training param except display ones, and the data."""
    params = cfg.model_dump(exclude={"progress_bar", "num_workers", "num_threads"})
    return hashlib.sha256(json.dumps([params, data_hash], sort_keys=True).encode()).hexdigest()


def resume_point(ckpt_dir: Path, key: str) -> tuple[str | None, str | None]:
    """(last checkpoint, MLflow run id) of an interrupted run with the same fingerprint, else (None, None).

    A checkpoint directory from another config or other data is cleared (rank 0 only).
    """
    state = ckpt_dir / STATE
    last = ckpt_dir / "last.ckpt"
    try:
        saved = read_json(state) if last.exists() else {}
    except (OSError, ValueError):  # vanished (another rank cleared it) or half-written
        saved = {}
    if saved.get("fingerprint") == key:
        return str(last), saved.get("run_id")
    if rank_zero_only.rank == 0 and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    return None, None


class RecordRun(L.Callback):
    """Writes the fingerprint and the MLflow run id next to the checkpoints when fitting starts."""

    def __init__(self, ckpt_dir: Path, key: str):
        self.ckpt_dir, self.key = ckpt_dir, key

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            write_json(self.ckpt_dir / STATE, {"fingerprint": self.key, "run_id": trainer.logger.run_id})
