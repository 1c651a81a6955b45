"""The whole DVC pipeline with tiny params, in a temporary copy of the repo (git + DVC initialised)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def sh(*cmd: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tracked and untracked-but-not-ignored files of the repo, committed in a fresh git repo."""
    dst = tmp_path_factory.mktemp("repo")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file() and not rel.startswith(("dvc.lock", "metrics/")):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["train"].update(max_epochs=2, batch_size=256, progress_bar=False)
    params["train"]["model"]["mlp"]["hidden"] = [32]
    params["evaluate"]["isolation_forest_trees"] = 20
    params["tune"].update(n_trials=3, max_epochs=2, progress_bar=False)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=dst)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=dst)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=dst)
    return dst


def test_repro_metrics_mlflow_and_noop(repo: Path):
    out = sh("dvc", "repro", cwd=repo)
    for stage in ("prepare", "tune", "train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in out
    metrics = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert set(metrics) == {"model", "pca", "isolation_forest", "knn_distance"}
    assert 0.0 <= metrics["model"]["auroc"] <= 1.0 and metrics["model"]["recon_mse"] > 0
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo))
    assert "metrics/evaluate.json" in json.dumps(shown) and "metrics/train.json" in json.dumps(shown)

    info = json.loads((repo / "models" / "run.json").read_text())
    assert info["tracking_uri"] == f"sqlite:///{repo / 'mlflow.db'}"
    mlflow.set_tracking_uri(info["tracking_uri"])
    client = mlflow.MlflowClient()
    run = client.get_run(info["run_id"])
    assert run.data.params["train.max_epochs"] == "2"
    best = json.loads((repo / "tune" / "best_params.json").read_text())
    assert run.data.params["train.lr"] == str(best["train"]["lr"])  # train used the search result
    assert run.data.tags["tuned_from"] == f"aeops#{best['trial']}"
    assert "test/auroc" in run.data.metrics and "baseline/pca/auroc" in run.data.metrics
    model = mlflow.pyfunc.load_model(f"runs:/{info['run_id']}/model")
    assert list(model.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 64]
    assert (repo / "mlartifacts").is_dir() and not (repo / "mlruns").exists()
    registered = json.loads((repo / "registry" / "registered.json").read_text())
    mv = client.get_model_version_by_alias(registered["name"], "challenger")
    assert str(mv.version) == str(registered["version"]) and mv.run_id == info["run_id"]

    assert "Data and pipelines are up to date" in sh("dvc", "repro", cwd=repo)


def test_training_param_change_reruns_train_and_evaluate_only(repo: Path):
    if not (repo / "dvc.lock").exists():
        sh("dvc", "repro", cwd=repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["lr"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(json.loads(sh("dvc", "status", "--json", cwd=repo))) == {"train"}
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "lr", cwd=repo)
    out = sh("dvc", "exp", "run", "-S", "train.max_epochs=3", cwd=repo)
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'register'" in out and "Running stage 'tune'" not in out
    assert "Running stage 'prepare'" not in out
    assert json.loads((repo / "metrics" / "train.json").read_text())["epochs"] == 3
