"""Guards against silently wrong answers and unhelpful errors (issue: journeys off the default path)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from aeops import cli
from aeops.config import Choices, IntRange, TuneConfig, parse_section
from aeops.errors import AeopsError, ConfigError, DataError
from aeops.evaluation.evaluate import evaluation_warnings
from aeops.paths import refuse_dvc_out
from aeops.scoring.scorer import InputError, Scorer
from aeops.training.choice import apply_tuned
from aeops.tuning.space import cap_latent


def _scorer(threshold: float = 0.1, expected: float | None = 0.05, ignored: list[str] | None = None) -> Scorer:
    from aeops.models.factory import build_autoencoder
    from aeops.scoring.bundle import ModelBundle
    from aeops.scoring.rule import ScoringRule

    cfg = {"latent_dim": 2, "mlp": {"hidden": [4]}}
    scaler = {"feature_names": ["a", "b", "c"], "offset": [100.0, 0, 0], "scale": [10.0, 1, 1],
              "train_min": [80.0, -2, -2], "train_max": [120.0, 2, 2], "ignored_features": ignored or []}
    rule = ScoringRule(threshold=threshold, threshold_percentile=None if expected is None else 100 * (1 - expected))
    return Scorer(ModelBundle(model_cfg=cfg, n_features=3, image_shape=None, unit_interval=False,
                              state_dict=build_autoencoder(cfg, 3).state_dict(), scaler=scaler, data_hash="x",
                              scoring=rule))


def test_values_beyond_the_hard_bound_are_refused_naming_the_column():
    scorer = _scorer()
    ok = pd.DataFrame({"a": [100.0, 5000.0], "b": [0.0, 1.0], "c": [0.0, -1.0]})  # far but plausible: scored
    assert len(scorer.score(ok)) == 2
    bad = ok.assign(b=[0.0, 1e30])
    with pytest.raises(InputError, match=r"beyond 1e\+06 training scales in column\(s\) \[b\].*b = 1e\+30"):
        scorer.score(bad)


def test_columns_prepare_dropped_are_accepted_and_ignored():
    rows = pd.DataFrame({"a": [100.0, 90.0], "b": [0.0, 1.0], "c": [0.0, -1.0]})
    with_dropped = rows.assign(k=[7.0, 7.0], a_copy=rows["a"])
    scorer = _scorer(ignored=["k", "a_copy"])
    pd.testing.assert_frame_equal(scorer.score(with_dropped), scorer.score(rows))
    with pytest.raises(InputError, match=r"unexpected column\(s\) \[k"):
        _scorer().score(with_dropped)  # a column the model never saw is still refused


def test_a_mostly_out_of_range_or_mostly_flagged_batch_is_warned_about():
    scorer = _scorer()
    raw = pd.DataFrame({"a": np.full(40, 100.0), "b": np.zeros(40), "c": np.zeros(40)})
    assert scorer.out_of_range(scorer.matrix(raw)).sum() == 0
    prescaled = raw.assign(a=0.0)  # 'a' standardised already: far below its raw training range
    outside = int((scorer.out_of_range(scorer.matrix(prescaled)) > 0).sum())
    warnings = scorer.batch_warnings(40, outside, flagged=2)
    assert outside == 40 and len(warnings) == 1 and "pre-scaled" in warnings[0]
    assert "raw units" in scorer.batch_warnings(40, 0, flagged=30)[0]  # 75 % flagged, 5 % expected
    assert scorer.batch_warnings(40, 0, flagged=3) == []


def test_user_commands_never_write_into_a_dvc_out(tmp_path: Path):
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  s:\n    cmd: x\n    outs: [models, {tune/storage: {persist: true}}]\n"
        "    metrics: [{metrics/e.json: {cache: false}}]\n"
    )
    for path in ("models/onnx", "models", "tune/storage/x", "metrics/e.json"):
        with pytest.raises(DataError, match="inside the DVC out"):
            refuse_dvc_out(tmp_path / path, tmp_path)
    refuse_dvc_out(tmp_path / "exports" / "onnx", tmp_path)
    refuse_dvc_out(tmp_path / "modelsx", tmp_path)


def test_tune_caps_the_latent_size_below_the_feature_count():
    assert cap_latent(IntRange(low=2, high=16), 9) == IntRange(low=2, high=4)
    assert cap_latent(IntRange(low=2, high=16), 64) == IntRange(low=2, high=16)
    assert cap_latent(IntRange(low=10, high=16), 6) == 3
    assert cap_latent(Choices(choices=[4, 8, 32]), 9).choices == [4]
    assert cap_latent(12, 9) == 4
    assert cap_latent(IntRange(low=2, high=16), 3) == 1


def test_evaluation_warns_on_few_anomalies_and_a_code_as_wide_as_the_input():
    assert evaluation_warnings(4, 64, np.array([0] * 50 + [1] * 10)) == []
    few, wide = evaluation_warnings(13, 9, np.array([0] * 50 + [1] * 2))
    assert "holds 2 anomalies" in few and "latent size 13 is not below the 9 features" in wide


def test_stale_tuned_params_lose_to_train_model_with_a_reason(prepared: Path):
    from aeops.io import hash_dir

    tuned = {"enabled": True, "study": "s", "trial": 3, "data_hash": hash_dir(prepared), "n_features": 64,
             "train": {"lr": 0.005, "model": {"variant": "sparse", "latent_dim": 5}}}
    Path("best.json").write_text(json.dumps(tuned))
    cfg = parse_section("train", {"tuned_params": "best.json"})
    choice = apply_tuned(cfg, tune_enabled=True)
    assert choice.source == "tune:s#3" and choice.cfg.model.variant == "sparse" and choice.cfg.lr == 0.005
    off = apply_tuned(cfg, tune_enabled=False)
    assert off.cfg == cfg and off.reason == "tune.enabled is false"
    Path("best.json").write_text(json.dumps(tuned | {"data_hash": "0" * 64}))
    stale = apply_tuned(cfg, tune_enabled=True)
    assert stale.source == "train.model" and "searched on other data" in stale.reason and stale.cfg == cfg
    Path("best.json").write_text(json.dumps({"enabled": False}))
    assert "tune disabled" in apply_tuned(cfg, tune_enabled=True).reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message; this machine has a GPU")
def test_gpu_without_a_gpu_is_one_line(workdir: Path, capsys):
    (workdir / "params.yaml").write_text("train: {accelerator: gpu}\ntune: {enabled: false}\n")
    assert cli.main(["train"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: params.yaml: train.accelerator = 'gpu' but no GPU found: use train.accelerator=cpu or auto"


def test_outside_the_project_one_line_and_nothing_written(workdir: Path, capsys):
    assert cli.main(["promote"]) == 2
    err = capsys.readouterr().err
    assert "params file not found" in err and "run from the project root or pass --params" in err
    project = workdir / "project"
    project.mkdir()
    (project / "params.yaml").write_text("register: {}\n")
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    import os

    os.chdir(elsewhere)
    assert cli.main(["promote", "--params", str(project / "params.yaml")]) == 2
    assert "no 'challenger' version" in capsys.readouterr().err
    assert not (elsewhere / "mlflow.db").exists()  # the store is the project's, not the cwd's
    assert Path.cwd() == project


def test_bugs_keep_their_traceback_and_aeops_debug_shows_it_for_user_errors(workdir, monkeypatch, capsys):
    (workdir / "params.yaml").write_text("register: {}\n")

    def bug(params, args):
        raise KeyError("a bug")

    def mistake(params, args):
        raise ConfigError("params.yaml: a user mistake")

    monkeypatch.setitem(cli.COMMANDS, "promote", (bug, ""))
    with pytest.raises(KeyError):
        cli.main(["promote"])
    monkeypatch.setitem(cli.COMMANDS, "promote", (mistake, ""))
    assert cli.main(["promote"]) == 2 and capsys.readouterr().err == "error: params.yaml: a user mistake\n"
    monkeypatch.setenv("AEOPS_DEBUG", "1")
    with pytest.raises(ConfigError):
        cli.main(["promote"])


def test_a_failed_tune_leaves_its_parent_run_failed(prepared: Path, mlflow_cfg, monkeypatch):
    from aeops.tracking import tracking_uri
    from aeops.tuning import study

    def boom(*args, **kwargs):
        raise RuntimeError("worker crashed")

    monkeypatch.setattr("aeops.tuning.workers.run_workers", boom)  # study imports it when a study runs
    cfg = TuneConfig(n_trials=1, max_epochs=1, progress_bar=False)
    with pytest.raises(RuntimeError):
        study.tune(cfg, mlflow_cfg)
    client = mlflow.MlflowClient(tracking_uri(mlflow_cfg))
    runs = client.search_runs([client.get_experiment_by_name(mlflow_cfg.experiment).experiment_id])
    assert [r.info.status for r in runs if r.data.tags.get("aeops.stage") == "tune"] == ["FAILED"]


def test_a_killed_training_run_ends_killed(prepared: Path, mlflow_cfg, monkeypatch):
    import lightning as L
    from conftest import tiny_train

    from aeops.tracking import tracking_uri
    from aeops.training.train import train

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(L.Trainer, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_train(), mlflow_cfg)
    client = mlflow.MlflowClient(tracking_uri(mlflow_cfg))
    runs = client.search_runs([client.get_experiment_by_name(mlflow_cfg.experiment).experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]


def test_aeops_cap_caps_sizes_and_rejects_nonsense(monkeypatch):
    monkeypatch.setenv("AEOPS_CAP", "epochs=2,trials=3,rows=100")
    assert parse_section("train", {"max_epochs": 60}).max_epochs == 2
    assert parse_section("train", {}).min_epoch_rows == 0  # capped epochs stay quick on small tables
    assert parse_section("tune", {}).n_trials == 3 and parse_section("tune", {}).max_epochs == 2
    assert parse_section("prepare", {}).max_train_rows == 100
    assert parse_section("prepare", {"max_train_rows": 50}).max_train_rows == 50
    assert parse_section("prepare", {}).max_eval_rows == 100  # val and test too: a smoke run writes small splits
    assert parse_section("evaluate", {}).max_rows == 100  # evaluated rows too, as an ordinary param
    from aeops.data.prepared import MAX_EVAL_VALUES, eval_rows

    assert eval_rows(10, 100) == 100 and eval_rows(MAX_EVAL_VALUES // 10, 100) == 10  # memory still bounds
    monkeypatch.delenv("AEOPS_CAP")
    assert eval_rows(10) == MAX_EVAL_VALUES // 10  # the library reads no environment: only its arguments
    monkeypatch.setenv("AEOPS_CAP", "rows=100")
    assert eval_rows(10) == MAX_EVAL_VALUES // 10
    monkeypatch.setenv("AEOPS_CAP", "epoch=2")
    with pytest.raises(AeopsError, match="AEOPS_CAP: 'epoch=2' is invalid"):
        parse_section("train", {})


def _meta(path: Path, **fields: object) -> None:
    """A meta.json as prepare writes it, for one table feature `a` unless `fields` say otherwise."""
    import json

    meta = {"source": "table", "feature_names": ["a"], "image_shape": None, "n_features": 1, "has_labels": False,
            "has_anomaly": False, "scaling": "standard", "value_range": [0.0, 1.0], "unit_interval": True}
    (path / "meta.json").write_text(json.dumps(meta | fields))


def test_synthetic_anomalies_keep_the_marginals_and_break_rows(tmp_path: Path):
    from aeops.tuning.objectives import objective_callbacks, synthetic_anomalies

    x = np.arange(40, dtype=np.float32).reshape(10, 4) * [1, 10, 100, 1000]
    fake = synthetic_anomalies(x, seed=0)
    assert fake.shape == x.shape and not np.array_equal(fake, x)
    assert ((fake != x).sum(axis=1) == 1).all()  # a quarter of 4 features: one, from another row
    for j in range(4):
        assert set(fake[:, j]) <= set(x[:, j])  # values come from the same column
    np.testing.assert_array_equal(fake, synthetic_anomalies(x, seed=0))  # seeded
    _meta(tmp_path)
    pd.DataFrame({"a": [0.0, 1.0]}).to_parquet(tmp_path / "val.parquet")
    with pytest.raises(ConfigError, match="tune.objective = 'val_auroc' needs labelled anomalies"):
        objective_callbacks("val_auroc", str(tmp_path), 0)
    assert len(objective_callbacks("val_synthetic_auroc", str(tmp_path), 0)) == 1


def test_auto_objective_follows_the_labels_and_the_data_kind(tmp_path: Path):
    """Labels: val_auroc. None: val_synthetic_auroc for a table (measured best), val_recon_loss for images."""
    from aeops.tuning.objectives import resolve_objective

    _meta(tmp_path)
    assert resolve_objective("auto", str(tmp_path)) == "val_synthetic_auroc"
    assert resolve_objective("val_recon_loss", str(tmp_path)) == "val_recon_loss"  # an explicit choice stands
    _meta(tmp_path, image_shape=[1, 1, 1])
    assert resolve_objective("auto", str(tmp_path)) == "val_recon_loss"
    pd.DataFrame({"a": [5.0]}).to_parquet(tmp_path / "val_anomalies.parquet")
    assert resolve_objective("auto", str(tmp_path)) == "val_auroc"


def test_serve_passes_workers_to_mlflows_server_and_refuses_zero(workdir: Path, monkeypatch, capsys):
    (workdir / "params.yaml").write_text("register: {}\n")
    started = []
    monkeypatch.setattr(cli, "_require_model", lambda *a: None)
    from aeops.serving import server

    monkeypatch.setattr(server, "download_model", lambda *a: str(workdir))
    monkeypatch.setattr(cli.os, "execvpe", lambda file, cmd, env: started.append((cmd, env)))
    assert cli.main(["serve", "--model", "models:/m/1", "--workers", "2"]) == 0
    cmd, env = started[0]
    assert cmd[cmd.index("--workers") + 1] == "2" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[-1] == "aeops.serving.app:app" and env["__pyfunc_model_path__"].endswith(workdir.name)
    assert "(2 workers)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["serve", "--workers", "0"])
    assert "not a whole number ≥ 1" in capsys.readouterr().err
