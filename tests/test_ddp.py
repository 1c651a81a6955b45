"""The multi-GPU path for real: `strategy: ddp` with 2 CPU processes (gloo), end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.slow


def test_ddp_two_processes_train_one_mlflow_run(prepared, workdir):
    params = {
        "train": {
            "max_epochs": 3, "patience": 3, "batch_size": 64, "accelerator": "cpu", "devices": 2,
            "strategy": "ddp", "progress_bar": False, "model": {"latent_dim": 4, "mlp": {"hidden": [32]}},
        },
        "mlflow": {"experiment": "ddp"},
    }
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "train.py")],
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
