"""The multi-GPU path for real: README's `torchrun` command, `strategy: ddp` with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import readme
import yaml
from conftest import REPO

pytestmark = pytest.mark.slow
TORCHRUN = "torchrun --standalone --nproc-per-node 2 pipelines/train.py"


def test_ddp_two_processes_train_one_mlflow_run(prepared, workdir):
    params = {
        "tune": {"enabled": False},
        "train": {
            "max_epochs": 3, "patience": 3, "batch_size": 64, "accelerator": "cpu", "devices": 2,
            "strategy": "ddp", "progress_bar": False, "model": {"latent_dim": 4, "mlp": {"hidden": [32]}},
        },
        "mlflow": {"experiment": "ddp"},
    }
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    command = next(c for c in readme.runnable() if c.startswith("torchrun"))
    assert command == TORCHRUN  # the README command, with the entry point's path made absolute
    proc = subprocess.run(
        command.replace("pipelines/train.py", str(REPO / "pipelines" / "train.py")).split(),
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert "All distributed processes registered" in proc.stderr + proc.stdout

    info = json.loads((workdir / "models" / "run.json").read_text())
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("ddp")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [info["run_id"]]  # one run, not one per process
    assert len(client.get_metric_history(info["run_id"], "val/loss")) == 3  # logged once per epoch
    assert runs[0].data.params["train.strategy"] == "ddp"
    assert info["metrics"]["epochs"] == 3
