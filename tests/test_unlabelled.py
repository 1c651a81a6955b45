"""Data without labels, anomalies inside: robust training (train.robust), the threshold by contamination
(evaluate.contamination) and evaluate's word on what its numbers rest on."""

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from aeops.config import TrainConfig
from aeops.models.autoencoder import trimmed_mean
from aeops.models.lightning import LitAutoencoder
from aeops.scoring.rule import CONTAMINATION_RANGE, estimate_contamination
from aeops.training.train import robust_share


def test_trimmed_mean_leaves_out_the_largest_share_and_gives_them_no_gradient():
    values = torch.tensor([1.0, 9.0, 2.0, 3.0, 100.0, 4.0, 5.0, 6.0, 7.0, 8.0], requires_grad=True)
    out = trimmed_mean(values, 0.2)  # 8 of 10 kept: the two largest (100 and 9) left out
    assert out.item() == pytest.approx(36 / 8)
    out.backward()
    assert values.grad[[1, 4]].abs().sum() == 0 and (values.grad[[0, 2, 3, 5, 6, 7, 8, 9]] == 1 / 8).all()
    assert trimmed_mean(torch.tensor([3.0]), 0.4).item() == 3.0  # one row: kept


def test_auto_is_on_only_without_an_anomaly_protocol():
    assert robust_share(TrainConfig(), labelled=True) == 0.0
    assert robust_share(TrainConfig(), labelled=False) == 0.2
    assert robust_share(TrainConfig(robust=True, robust_share=0.1), labelled=True) == 0.1
    assert robust_share(TrainConfig(robust=False), labelled=False) == 0.0
    for bad in (0.0, 0.5, -0.1):
        with pytest.raises(ValueError, match="robust_share"):
            TrainConfig(robust_share=bad)


def _contaminated(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows near a 2-d plane in 10-d; 8 % planted anomalies in a tight cluster off the plane."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, 10))
    normal = rng.normal(size=(920, 2)) @ basis + 0.05 * rng.normal(size=(920, 10))
    centre = rng.normal(size=10)
    centre *= 4.0 / np.linalg.norm(centre)
    anomalies = centre + 0.05 * rng.normal(size=(80, 10))
    x = np.concatenate([normal, anomalies]).astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    return x, np.r_[np.zeros(920, bool), np.ones(80, bool)]


def _errors(x: np.ndarray, trim: float) -> np.ndarray:
    L.seed_everything(0, verbose=False)
    lit = LitAutoencoder({"latent_dim": 2, "mlp": {"hidden": [32]}}, x.shape[1], lr=3e-3, trim=trim, trim_warmup=3)
    trainer = L.Trainer(max_epochs=25, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", deterministic=True)
    trainer.fit(lit, DataLoader(torch.from_numpy(x), batch_size=50, shuffle=True))
    with torch.no_grad():
        recon = lit.eval()(torch.from_numpy(x)).numpy()
    return ((recon - x) ** 2).mean(axis=1)


def test_robust_training_keeps_planted_anomalies_poorly_reconstructed():
    """Without trimming, a code of 2 learns the anomaly cluster too; with each batch's worst 10 % left out it
    does not, so the planted rows' error stays far above the normal rows' and they rank on top."""
    x, planted = _contaminated()
    ratio = {}
    for trim in (0.0, 0.1):
        err = _errors(x, trim)
        ratio[trim] = err[planted].mean() / err[~planted].mean()
        top = np.argsort(-err)[: planted.sum()]
        ratio[f"top{trim}"] = planted[top].mean()  # share of planted rows among the highest errors
    assert ratio[0.1] > 3 * ratio[0.0], ratio
    assert ratio["top0.1"] > 0.9 and ratio["top0.1"] > ratio["top0.0"], ratio


def test_estimated_contamination_finds_the_far_tail_and_stays_in_range():
    rng = np.random.default_rng(0)
    clean = rng.lognormal(size=5000)  # residual-like: positive and right-skewed
    assert estimate_contamination(clean) == CONTAMINATION_RANGE[0]  # a lognormal has ~0.1 % beyond 3 SDs of log
    dirty = np.r_[clean, rng.lognormal(mean=6, size=250)]  # 250 of 5250 far above
    assert estimate_contamination(dirty) == pytest.approx(250 / 5250, abs=0.005)
    z = np.r_[rng.normal(size=950), rng.normal(10, 1, size=50)]  # fused scores are sums of z-scores: any sign
    assert estimate_contamination(z) == pytest.approx(0.05, abs=0.005)
    assert estimate_contamination(np.r_[np.zeros(10), np.ones(90)]) == CONTAMINATION_RANGE[0]  # no spread: the floor
    assert estimate_contamination(np.r_[rng.normal(size=650), rng.normal(20, 1, size=350)]) == CONTAMINATION_RANGE[1]  # 35 %: capped


def test_a_contamination_share_is_refused_where_labels_give_clean_validation_rows():
    from aeops.config import EvaluateConfig
    from aeops.errors import ConfigError
    from aeops.evaluation.evaluate import rule_settings

    assert rule_settings(EvaluateConfig(contamination=0.2), labelled=False).contamination == 0.2
    assert rule_settings(EvaluateConfig(), labelled=True).contamination is None  # auto: only without labels
    with pytest.raises(ConfigError, match=r"^params.yaml: evaluate.contamination = 0.2 applies only without an anomaly "
                                          r"protocol .*; use auto or null$"):
        rule_settings(EvaluateConfig(contamination=0.2), labelled=True)


def test_an_unlabelled_table_trains_robustly_and_its_threshold_flags_the_contamination(workdir, mlflow_cfg, capfd):
    """No anomaly column: train is robust (auto), evaluate sets the threshold by the estimated contamination,
    says that nothing was measured against real anomalies, and a clean batch is flagged at most at that share."""
    from conftest import tiny_train

    from aeops.config import EvaluateConfig, PrepareConfig
    from aeops.data.prepare import prepare
    from aeops.evaluation.evaluate import evaluate
    from aeops.registry.register import version_description
    from aeops.scoring.bundle import ModelBundle
    from aeops.scoring.scorer import Scorer
    from aeops.training.train import train

    x, planted = _contaminated(1)
    names = [f"f{i}" for i in range(x.shape[1])]
    pd.DataFrame(x, columns=names).to_csv("t.csv", index=False)
    prepare(PrepareConfig(source="table", path="t.csv", normal_classes=None))
    cfg = tiny_train(latent_dim=2)
    cfg.max_epochs, cfg.robust_warmup, cfg.min_epoch_rows = 8, 2, 2048
    train(cfg, mlflow_cfg)
    assert "robust: each batch leaves out its worst 20% after epoch 2" in capfd.readouterr().err
    results = evaluate(EvaluateConfig(isolation_forest_trees=10), mlflow_cfg)
    model = results["model"]
    assert model["auroc"] is None and CONTAMINATION_RANGE[0] <= model["contamination"] <= CONTAMINATION_RANGE[1]
    assert any(w.startswith("no anomaly labels (prepare set no anomaly protocol): there is no test AUROC")
               and f"flags {model['contamination']:.1%} of the validation rows" in w for w in results["warnings"])
    bundle = ModelBundle.load("bundle")
    assert bundle.scoring.contamination == model["contamination"] and bundle.scoring.threshold == model["threshold"]
    assert bundle.scoring.expected_flagged == pytest.approx(model["contamination"])
    scorer = Scorer(bundle)
    raw = pd.read_csv("t.csv")
    flagged = scorer.score(raw)["is_anomaly"].to_numpy().astype(bool)
    assert flagged[planted].mean() > 0.9  # the planted cluster stands out of a robustly trained model
    assert flagged[~planted].mean() <= model["contamination"] + 0.02  # a clean batch: at most about that share
    described = version_description(results, {}, "r1")
    assert f"no labels: flags {model['contamination']:.1%} of validation rows" in described
    fixed = evaluate(EvaluateConfig(isolation_forest_trees=10, contamination=0.2), mlflow_cfg)["model"]
    assert fixed["contamination"] == 0.2
    plain = evaluate(EvaluateConfig(isolation_forest_trees=10, contamination=None, threshold_percentile=90), mlflow_cfg)
    assert "contamination" not in plain["model"] and ModelBundle.load("bundle").scoring.threshold_percentile == 90
