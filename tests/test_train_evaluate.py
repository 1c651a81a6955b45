"""Train and evaluate in-process on digits: checkpoints, the MLflow run and its model, metrics files."""

from __future__ import annotations

import json
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_train

from aeops.config import EvaluateConfig
from aeops.data.prepared import load_scaler, load_split
from aeops.evaluation.evaluate import evaluate, methods
from aeops.models.lightning import load_autoencoder
from aeops.scoring.bundle import ModelBundle
from aeops.tracking import tracking_uri
from aeops.training.train import train


def _run(mlflow_cfg):
    info = json.loads(open("models/run.json").read())
    client = mlflow.MlflowClient(tracking_uri(mlflow_cfg))
    return info, client, client.get_run(info["run_id"])


def test_train_writes_checkpoints_and_tracks_everything(prepared, mlflow_cfg):
    metrics = train(tiny_train(), mlflow_cfg)
    assert metrics["epochs"] == 3 and np.isfinite(metrics["test/loss"])
    assert {p.name for p in (prepared.parent.parent / "models/checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    info, client, run = _run(mlflow_cfg)
    assert len(client.search_runs([run.info.experiment_id])) == 1
    params, tags = run.data.params, run.data.tags
    assert params["train.model.variant"] == "vanilla" and params["train.max_epochs"] == "3"
    assert params["prepare.source"] == "digits" and params["prepare.normal_classes"] == str(list(range(9)))
    assert tags["dvc_stage"] == "train" and tags["data_hash"] == info["data_hash"] and tags["git_commit"]
    assert tags["dropped_columns"] == "none"  # digits: prepare dropped no column
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert len(history) == 3 and len(client.get_metric_history(run.info.run_id, "train/loss")) == 3
    assert [m.step for m in history] == [0, 1, 2]  # the x-axis is the epoch, not the batch count
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test/loss")] == [0]  # one value: a bar

    # What the MLflow UI shows: a run name with data and model, the effective config once, lineage.
    assert run.info.run_name == "digits[0-8] vanilla-mlp z4" and tags["data"] == "digits[0-8]"
    assert tags["dvc_experiment"] == "none (dvc repro)" and tags["resumed_from_epoch"] == "0"
    assert not [k for k in params if k.startswith("model_cfg") or ".conv." in k or ".sparse." in k]
    assert "train.model.mlp.hidden" in params and params["n_parameters"] == str(metrics["n_parameters"])
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # not MLflow 3's GenAI view
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.name == "digits[0-8]" and dataset.dataset.digest == info["data_hash"][:12]
    assert "px_63" in dataset.dataset.schema and json.loads(dataset.dataset.profile)["num_rows"] == 1050
    # vanilla has no penalty: one loss curve per split (plus val/recon_loss, tune's cross-variant measure)
    assert {k for k in run.data.metrics if k.startswith(("train/", "val/", "test/"))} == {
        "train/loss", "val/loss", "val/recon_loss", "test/loss", "val/best_loss"}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/loss_curves.png", "plots/latent_2d.png", "plots/reconstructions.png"}
    assert client.list_artifacts(run.info.run_id, "data")
    logged_meta = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/data/meta.json")  # the file, not a repr
    assert logged_meta["n_features"] == 64 and logged_meta["image_shape"] == [1, 8, 8]

    assert not client.list_artifacts(run.info.run_id, "model")  # one model format: the bundle register logs

    # The bundle built from the training outputs reconstructs like the best checkpoint.
    model, _ = load_autoencoder(info["best_checkpoint"])
    bundle = ModelBundle.from_training("models", scaler=load_scaler(prepared))
    assert bundle.run_id == info["run_id"] and bundle.data_hash == info["data_hash"] and bundle.scoring is None
    x = torch.from_numpy(load_split(prepared, "test").x[:16])
    with torch.no_grad():
        np.testing.assert_allclose(bundle.network().reconstruct(x).numpy(), model.reconstruct(x).numpy(), rtol=1e-6)


def test_checkpoint_loads_with_weights_only(prepared, mlflow_cfg):
    train(tiny_train(variant="variational", architecture="conv"), mlflow_cfg)
    ckpt = torch.load("models/checkpoints/best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["model_cfg"]["variant"] == "variational"
    model, _ = load_autoencoder("models/checkpoints/best.ckpt")
    assert not model.training


@pytest.mark.parametrize("variant,arch", [("denoising", "mlp"), ("sparse", "conv"), ("contractive", "mlp")])
def test_variants_train_end_to_end(prepared, mlflow_cfg, variant, arch):
    metrics = train(tiny_train(variant=variant, architecture=arch), mlflow_cfg)
    assert np.isfinite(metrics["test/loss"])
    if variant != "denoising":
        assert metrics["test/reg_loss"] > 0
    _, _, run = _run(mlflow_cfg)
    assert run.data.tags["variant"] == variant


def test_same_seed_same_metrics(prepared, mlflow_cfg):
    a = train(tiny_train(), mlflow_cfg)
    b = train(tiny_train(), mlflow_cfg)
    assert a["test/loss"] == b["test/loss"] and a["best_val_loss"] == b["best_val_loss"]


def test_evaluate_compares_model_and_baselines_and_logs_to_the_training_run(prepared, mlflow_cfg):
    cfg = tiny_train()
    cfg.max_epochs, cfg.patience = 20, 20  # enough to learn digits (AUROC ~0.74 measured for z=4)
    train(cfg, mlflow_cfg)
    record = evaluate(EvaluateConfig(), mlflow_cfg)
    results = methods(record)
    assert set(results) == {"model", "pca", "isolation_forest", "knn_distance"}
    assert set(results["model"]) == set(results["pca"])
    assert record["warnings"] == []  # 36 anomalies in the test split, latent 4 < 64 features
    assert ModelBundle.load("bundle").scoring.threshold == results["model"]["threshold"]  # the bundle it wrote
    assert results["model"]["score_neighbors"] == 0 and results["model"]["score_choice"] == "residual"  # images: auto
    for method in results.values():
        assert 0.5 < method["auroc"] <= 1.0
        assert method["threshold"] is not None
    m = results["model"]
    assert m["compression_ratio"] == 64 / 4 and m["bits_per_value"] == 8 * 4 / 64
    assert m["quantized_psnr"] <= m["psnr"] + 1e-6
    assert json.loads(open("metrics/evaluate.json").read()) == record
    plots = {p.name for p in (prepared.parent.parent / "plots/evaluate").iterdir()}
    assert {"roc_model.csv", "pr_pca.csv", "roc.png", "pr.png", "score_histograms.png"} <= plots
    _, client, run = _run(mlflow_cfg)
    assert run.data.metrics["test/auroc"] == pytest.approx(m["auroc"])
    assert run.data.metrics["vs_baseline/knn_distance/auroc"] == pytest.approx(results["knn_distance"]["auroc"])
    # Headline metrics only, no settings logged as metrics, nothing logged twice under two names.
    logged = run.data.metrics
    assert not [k for k in logged if k.rsplit("/", 1)[-1] in ("latent_dim", "ensemble", "score_smoothing")]
    assert not [k for k in logged if k.startswith("final/")] and "vs_baseline/pca/recon_mse" not in logged
    logged_table = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/evaluate/comparison.json")  # mlflow.log_table
    table = pd.DataFrame(logged_table["data"], columns=logged_table["columns"])  # the full comparison
    assert list(table["method"]) == ["aeops", "pca", "isolation_forest", "knn_distance"]
    assert table.set_index("method").loc["pca", "recon_mse"] == pytest.approx(results["pca"]["recon_mse"])
    assert client.list_artifacts(run.info.run_id, "evaluate/plots")
    assert [a.path for a in client.list_artifacts(run.info.run_id, "report")] == [f"report/{run.info.run_id}.html"]
    from aeops.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^params.yaml: evaluate.score_neighbors = true needs table data .*images$"):
        evaluate(EvaluateConfig(score_neighbors=True, isolation_forest_trees=10), mlflow_cfg)
    assert json.loads(open("metrics/evaluate.json").read()) == record  # nothing written


def test_killed_training_resumes_from_the_last_checkpoint(prepared, workdir):
    """Kill `train` mid-way; the rerun continues from last.ckpt in the same MLflow run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml
    from conftest import REPO

    params = {"tune": {"enabled": False}, "train": {"max_epochs": 12, "patience": 12, "batch_size": 16, "accelerator": "cpu", "ensemble": 1,
                        "min_epoch_rows": 0,
                        "progress_bar": False, "model": {"latent_dim": 4, "mlp": {"hidden": [256, 128]}}}}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    from warm import python

    cmd = [sys.executable, str(REPO / "pipelines" / "train.py")]  # SIGKILLed below: the process itself
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = workdir / "models/checkpoints/last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if last.exists() and (workdir / "models/checkpoints/resume.json").exists():
            try:
                if torch.load(last, weights_only=True)["epoch"] >= 3:
                    break
            except Exception:  # being written
                continue
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done = torch.load(last, weights_only=True)["epoch"] + 1
    assert 4 <= done < 12 and not (workdir / "models/run.json").exists()
    first_run = json.loads((workdir / "models/checkpoints/resume.json").read_text())["run_id"]

    out = subprocess.run([python(), *cmd[1:]], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Restoring states from the checkpoint path" in out.stderr + out.stdout
    info = json.loads((workdir / "models/run.json").read_text())
    assert info["metrics"]["resumed_from_epoch"] == done and info["metrics"]["epochs"] == 12
    assert info["run_id"] == first_run  # the same MLflow run goes on
    assert not (workdir / "models/checkpoints/resume.json").exists()  # finished: the next run starts afresh


def test_score_smoothing_on_a_table_is_refused_in_one_line(workdir, mlflow_cfg):
    from aeops.config import PrepareConfig
    from aeops.data.prepare import prepare
    from aeops.errors import ConfigError

    rng = np.random.default_rng(0)
    rows = [",".join(f"{v:.4f}" for v in r) + f",{int(i >= 180)}" for i, r in enumerate(rng.normal(size=(200, 5)))]
    (workdir / "t.csv").write_text("a,b,c,d,e,is_anomaly\n" + "\n".join(rows) + "\n")
    prepare(PrepareConfig(source="table", path="t.csv", anomaly_column="is_anomaly", normal_classes=None))
    cfg = tiny_train()
    cfg.max_epochs = 1
    train(cfg, mlflow_cfg)
    with pytest.raises(ConfigError, match=r"^params.yaml: evaluate.score_smoothing = 0.8 needs image data .*use 0 for tables$"):
        evaluate(EvaluateConfig(score_smoothing=0.8), mlflow_cfg)
    assert not (workdir / "metrics" / "evaluate.json").exists() and not (workdir / "plots").exists()
    # pooling the largest residuals is fine on tables
    results = evaluate(EvaluateConfig(score_top_fraction=0.4, isolation_forest_trees=10), mlflow_cfg)
    assert results["model"]["score_top_fraction"] == 0.4 and results["model"]["auroc"] is not None


def _gap_table(path) -> None:
    """Two clusters on a plane in 6-d; the anomalies lie on the plane, in the gap: a residual hardly sees them."""
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(6, 2)))[0].T
    t = np.r_[rng.normal(-3, 0.3, 700), rng.normal(3, 0.3, 700), rng.normal(0, 0.3, 200)]
    x = np.c_[t, rng.normal(size=len(t))] @ basis + 0.05 * rng.normal(size=(len(t), 6))
    df = pd.DataFrame(x, columns=list("abcdef")).assign(is_anomaly=(np.arange(len(t)) >= 1400).astype(int))
    df.to_csv(path, index=False)


def test_a_knn_term_joins_the_residual_where_it_wins_on_validation_and_serving_reproduces_it(workdir, mlflow_cfg):
    from sklearn.metrics import roc_auc_score

    from aeops.config import PrepareConfig
    from aeops.data.prepare import prepare
    from aeops.data.raw import raw_split
    from aeops.scoring.scorer import Scorer

    _gap_table(workdir / "t.csv")
    prepare(PrepareConfig(source="table", path="t.csv", anomaly_column="is_anomaly", normal_classes=None))
    train(tiny_train(latent_dim=2), mlflow_cfg)
    cfg = EvaluateConfig(isolation_forest_trees=10)
    plain = evaluate(cfg.model_copy(update={"score_neighbors": False}), mlflow_cfg)["model"]
    assert plain["score_neighbors"] == 0 and ModelBundle.load("bundle").reference is None
    auto = evaluate(cfg, mlflow_cfg)["model"]  # default: auto
    assert auto["score_neighbors"] == 5 and auto["score_knn_weight"] in (1, 2, 4)
    assert re.match(r"residual \+ kNN distance( ×[24])? \(validation AUROC .*: residual [\d.]+, \+ kNN distance ×1 ",
                    auto["score_choice"]), auto["score_choice"]
    assert "labelled anomalies" in auto["score_choice"] and auto["auroc"] > plain["auroc"] + 0.05
    bundle = ModelBundle.load("bundle")
    assert bundle.scoring.neighbors == 5 and bundle.reference.shape == (len(load_split("data/prepared", "train")), 6)
    df, split = raw_split("data/prepared")  # raw units, as a user sends them
    out = Scorer(bundle).score(df)
    assert roc_auc_score(split.is_anomaly, out["anomaly_score"]) == pytest.approx(auto["auroc"], abs=1e-9)
    assert (out["is_anomaly"] == (out["anomaly_score"] > auto["threshold"])).all()
    # why: one feature of normal rows pushed beyond its training range is each row's top feature (kNN rule),
    # with the number sent and the number the model expected
    normal = df[split.is_anomaly == 0].head(20).reset_index(drop=True)
    pushed = normal.copy()
    col = np.arange(len(pushed)) % 6
    for i, j in enumerate(col):
        pushed.iloc[i, j] = df.iloc[:, j].max() + 5 * df.iloc[:, j].std()
    why = Scorer(bundle).score(pushed, explain=2)
    assert why["explain_1_feature"].tolist() == [list("abcdef")[j] for j in col]
    np.testing.assert_allclose(why["explain_1_observed"], pushed.to_numpy()[np.arange(20), col])
    assert why["explain_1_expected"].dtype == np.float64 and (why["explain_1_share"] > why["explain_2_share"]).all()
    np.testing.assert_allclose(why["anomaly_score"], Scorer(bundle).score(pushed)["anomaly_score"])  # unchanged
