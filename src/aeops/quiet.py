"""Silence log lines that mean nothing to an aeops user (each filter names what it hides and why)."""

from __future__ import annotations

import logging
import os
import warnings


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet() -> None:
    """Install the filters once per process; warnings about the user's own data or params stay."""
    # Lightning 2.6 calls torch's deprecated LeafSpec() on every batch transfer: dozens of lines a run.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")
    # Lightning advertises its cloud logger in every Trainer; aeops logs to MLflow.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropPrefix("💡 Tip"))
    # torch's ONNX exporter warns once per torchvision op it skips; aeops uses no torchvision op.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    # MLflow's embedded store announces its schema set-up, and draws bars for artifact downloads.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)  # "Validating input example against ..."
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
