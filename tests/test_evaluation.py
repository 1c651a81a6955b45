"""Tests for aeops.evaluation: metrics, baselines and plots (numpy only, fast)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import precision_recall_fscore_support

from aeops import figures
from aeops.config import EvaluateConfig
from aeops.data.prepared import Split
from aeops.evaluation import plots
from aeops.evaluation.baselines import Coded, model_metrics, run_baselines
from aeops.evaluation.metrics import (
    anomaly_metrics,
    compression_metrics,
    embedding_metrics,
    quantize_codes,
    reconstruction_metrics,
)
from aeops.scoring.rule import RuleScorer, ScoringRule, anomaly_scores, choose_threshold, knn_distances, knn_index

MODEL_KEYS = {
    "recon_mse", "psnr", "quantized_psnr", "auroc", "auprc", "precision", "recall", "f1",
    "threshold", "knn_accuracy", "trustworthiness", "latent_dim", "compression_ratio",
    "bits_per_value",
}  # fmt: skip


def _plain(d: dict) -> bool:
    return all(v is None or type(v) in (int, float) for v in d.values())


@pytest.fixture(scope="module")
def digits_split():
    """Digits in [0, 1]; classes 0-8 normal (train/val), test = held-out normals + all 9s."""
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rng = np.random.default_rng(0)
    normal = np.flatnonzero(y != 9)
    rng.shuffle(normal)
    tr, va, te = normal[:1000], normal[1000:1300], normal[1300:]
    te = np.concatenate([te, np.flatnonzero(y == 9)])
    is_anom = (y[te] == 9).astype(int)
    return x[tr], y[tr], x[va], x[te], y[te], is_anom


# ---------------------------------------------------------------- metrics
def test_reconstruction_metrics_psnr_formula():
    x = np.zeros((4, 3))
    recon = np.full((4, 3), 0.1)
    m = reconstruction_metrics(x, recon, data_range=2.0)
    assert m["recon_mse"] == pytest.approx(0.01)
    assert m["psnr"] == pytest.approx(10 * math.log10(4.0 / 0.01))
    assert _plain(m)
    assert reconstruction_metrics(x, x, 1.0)["psnr"] is None  # infinite PSNR is not JSON


def test_reconstruction_errors_per_row_on_images():
    x = np.zeros((3, 1, 2, 2))
    recon = x.copy()
    recon[1] = 1.0
    recon[2, 0, 0, 0] = 2.0
    np.testing.assert_allclose(anomaly_scores(x, recon), [0.0, 1.0, 1.0])


def test_choose_threshold_is_percentile():
    s = np.arange(101, dtype=float)
    assert choose_threshold(s, 95) == pytest.approx(95.0)
    assert isinstance(choose_threshold(s, 50), float)


def test_anomaly_metrics_perfect_and_direct():
    y = np.array([0, 0, 0, 1, 1])
    m = anomaly_metrics(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), y, threshold=0.5)
    assert m == {"auroc": 1.0, "auprc": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0,
                 "threshold": 0.5}  # fmt: skip
    scores = np.array([0.1, 0.6, 0.3, 0.4, 0.9])
    m = anomaly_metrics(scores, y, threshold=0.35)
    p, r, f, _ = precision_recall_fscore_support(y, scores > 0.35, average="binary")
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((p, r, f))
    assert _plain(m)


def test_anomaly_metrics_without_two_classes():
    s = np.array([0.1, 0.2])
    for labels in (None, np.array([0, 0]), np.array([1, 1])):
        out = anomaly_metrics(s, labels, 0.5)
        assert out.pop("threshold") == 0.5  # kept: it comes from validation scores alone
        assert all(v is None for v in out.values())


def test_threshold_depends_only_on_val_scores():
    rng = np.random.default_rng(0)
    val = rng.normal(size=200)
    codes = rng.normal(size=(50, 2))
    test_x = rng.normal(size=(50, 4))
    cfg = EvaluateConfig(threshold_percentile=90)
    thresholds = []
    for flip in (0, 1):
        is_anom = (np.arange(50) % 2 == flip).astype(int)
        coded = Coded(train_codes=codes, test_codes=codes, test_recon=test_x, test_recon_quantized=None,
                      val_scores=val, test_scores=rng.normal(size=50))
        m = model_metrics(coded, train=Split(codes, None, None), test=Split(test_x, None, is_anom),
                          latent_dim=2, data_range=1.0, cfg=cfg)
        thresholds.append(m["threshold"])
    assert thresholds[0] == thresholds[1] == pytest.approx(np.percentile(val, 90))


def test_quantize_codes_error_bound_and_levels():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(500, 3)) * [1.0, 5.0, 0.1]
    lo, hi = train.min(axis=0), train.max(axis=0)
    for bits in (2, 8):
        q = quantize_codes(train, lo, hi, bits)
        bound = (hi - lo) / (2 * (2**bits - 1))
        assert np.all(np.abs(q - train) <= bound + 1e-12)
        levels = lo + np.arange(2**bits)[:, None] / (2**bits - 1) * (hi - lo)
        np.testing.assert_allclose(quantize_codes(levels, lo, hi, bits), levels, atol=1e-12)
    clipped = quantize_codes(np.array([[1e6, -1e6, 0.0]]), lo, hi)
    np.testing.assert_allclose(clipped[0, :2], [hi[0], lo[1]])
    const = quantize_codes(np.ones((4, 1)), np.ones(1), np.ones(1))
    np.testing.assert_array_equal(const, np.ones((4, 1)))


def test_compression_metrics():
    m = compression_metrics(64, 8)
    assert m == {"latent_dim": 8, "compression_ratio": 8.0, "bits_per_value": 1.0}
    assert type(m["latent_dim"]) is int
    assert compression_metrics(784, 16, bits=4)["bits_per_value"] == pytest.approx(64 / 784)


def test_knn_accuracy_ignores_unseen_classes():
    train = np.array([[0.0, 0], [0.1, 0], [0, 0.1], [10, 10], [10.1, 10], [10, 10.1]])
    train_y = np.array([0, 0, 0, 1, 1, 1])
    test = np.array([[0.05, 0.05], [10.05, 10.05], [0.0, 0.0], [10.0, 10.0]])
    test_y = np.array([0, 1, 7, 7])  # class 7 never trained on: ignored, not counted wrong
    m = embedding_metrics(train, train_y, test_x=test, test_codes=test, test_labels=test_y, n_neighbors=3, max_rows=100, seed=0)
    assert m["knn_accuracy"] == 1.0
    m = embedding_metrics(train, train_y, test_x=test, test_codes=test, test_labels=np.array([7, 7, 7, 7]), n_neighbors=3, max_rows=100, seed=0)
    assert m["knn_accuracy"] is None


def test_trustworthiness_identity_and_no_labels():
    x = np.random.default_rng(2).normal(size=(300, 5))
    m = embedding_metrics(x, None, test_x=x, test_codes=x, test_labels=None, n_neighbors=5, max_rows=100, seed=0)
    assert m["knn_accuracy"] is None
    assert m["trustworthiness"] == pytest.approx(1.0)
    # tiny test set: n_neighbors is clamped below n/2 instead of raising
    small = embedding_metrics(x, None, test_x=x[:10], test_codes=x[:10, :2], test_labels=None, n_neighbors=50, max_rows=2000, seed=0)
    assert 0.0 <= small["trustworthiness"] <= 1.0
    assert embedding_metrics(x, None, test_x=x[:2], test_codes=x[:2], test_labels=None, n_neighbors=5, max_rows=100, seed=0)["trustworthiness"] is None


# ---------------------------------------------------------------- baselines
def _baselines(digits_split, latent_dim: int, cfg: EvaluateConfig, score=anomaly_scores, knn=None):
    tr_x, tr_y, va_x, te_x, te_y, anom = digits_split
    return run_baselines(train=Split(tr_x, tr_y, None), val_x=va_x, test=Split(te_x, te_y, anom),
                         latent_dim=latent_dim, data_range=1.0, cfg=cfg, make_score=lambda v, r: score, knn=knn)


def test_baselines_on_digits_with_held_out_class(digits_split):
    tr_x, tr_y, va_x, te_x, te_y, anom = digits_split
    cfg = EvaluateConfig(isolation_forest_trees=100, trustworthiness_max_rows=300)
    metrics, scores = _baselines(digits_split, 8, cfg)
    assert set(metrics) == set(scores) == {"pca", "isolation_forest", "knn_distance"}
    for name, m in metrics.items():
        assert _plain(m), name
        assert m["auroc"] > (0.6 if name == "isolation_forest" else 0.75), (name, m["auroc"])
        assert scores[name].shape == (len(te_x),)
    pca = metrics["pca"]
    assert set(pca) == MODEL_KEYS
    assert pca["latent_dim"] == 8 and pca["compression_ratio"] == 8.0
    assert pca["knn_accuracy"] > 0.8  # the unseen class 9 is excluded
    assert pca["quantized_psnr"] <= pca["psnr"] + 1e-9
    assert 0.5 < pca["trustworthiness"] <= 1.0
    # evaluate hands over the kNN term's distances (same rows, same k): the baseline is the same, fitted once
    flat = [np.asarray(a, np.float64).reshape(len(a), -1) for a in (tr_x, va_x, te_x)]
    index = knn_index(flat[0], cfg.knn_neighbors)
    given = [knn_distances(index, flat[1]), knn_distances(index, flat[2])]
    assert _baselines(digits_split, 8, cfg, knn=given)[0]["knn_distance"] == metrics["knn_distance"]
    assert _baselines(digits_split, 8, cfg, knn=[-d for d in given])[0]["knn_distance"]["auroc"] < 0.5  # used as given


def test_pca_never_gets_as_many_components_as_features(digits_split):
    """With as many components as features PCA copies its input: its scores would be rounding noise."""
    cfg = EvaluateConfig(isolation_forest_trees=10, trustworthiness_max_rows=100)
    metrics, scores = _baselines(digits_split, 500, cfg)
    pca = metrics["pca"]
    assert pca["latent_dim"] == 63  # below the 64 features, whatever latent size was asked for
    assert pca["recon_mse"] > 1e-9 and np.ptp(scores["pca"]) > 1e-9  # full rank gives ~1e-30


def test_model_metrics_keys_match_pca(digits_split):
    tr_x, tr_y, va_x, te_x, te_y, anom = digits_split
    cfg = EvaluateConfig(isolation_forest_trees=10, trustworthiness_max_rows=100)
    pca_m, _ = _baselines(digits_split, 4, cfg)
    codes_tr, codes_te = tr_x[:, :4], te_x[:, :4]
    recon = np.clip(te_x + 0.05, 0, 1)
    val_s, test_s = anomaly_scores(va_x, va_x * 0.9), anomaly_scores(te_x, recon)
    train, test = Split(tr_x, tr_y, None), Split(te_x, te_y, anom)
    coded = Coded(train_codes=codes_tr, test_codes=codes_te, test_recon=recon, test_recon_quantized=recon,
                  val_scores=val_s, test_scores=test_s)
    m = model_metrics(coded, train=train, test=test, latent_dim=4, data_range=1.0, cfg=cfg)
    assert set(m) == set(pca_m["pca"]) == MODEL_KEYS
    assert _plain(m)
    # no labels at all: every key still present, label-based ones None
    coded = Coded(train_codes=codes_tr, test_codes=codes_te, test_recon=recon, test_recon_quantized=None,
                  val_scores=np.ones(5), test_scores=np.ones(len(te_x)))
    m = model_metrics(coded, train=Split(tr_x, None, None), test=Split(te_x, None, None), latent_dim=4,
                      data_range=1.0, cfg=cfg)
    assert set(m) == MODEL_KEYS
    assert m["auroc"] is None and m["knn_accuracy"] is None and m["quantized_psnr"] is None


# ---------------------------------------------------------------- plots
def _nonempty_png(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curve_csvs_and_pngs(tmp_path):
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.3).astype(int)
    scores = {"ae": rng.normal(size=3000) + y, "pca": rng.normal(size=3000) + 2 * y}
    paths = plots.write_curve_csvs(tmp_path / "curves", scores, y)
    names = {p.name for p in paths}
    assert names == {"roc_ae.csv", "pr_ae.csv", "roc_pca.csv", "pr_pca.csv"}
    for p in paths:
        rows = list(csv.reader(p.read_text().splitlines()))
        assert rows[0] == (["fpr", "tpr"] if p.name.startswith("roc") else ["recall", "precision"])
        assert 2 < len(rows) - 1 <= 501
        assert all(0 <= float(v) <= 1 for row in rows[1:] for v in row)
    pngs = plots.plot_curves_png(tmp_path, scores, y)
    assert {p.name for p in pngs} == {"roc.png", "pr.png"} and all(map(_nonempty_png, pngs))
    hist = plots.plot_score_histograms(tmp_path, scores, y, {"ae": 0.5, "pca": None})
    assert _nonempty_png(hist) and hist.name == "score_histograms.png"
    assert plots.write_curve_csvs(tmp_path / "none", scores, None) == []
    assert plots.plot_curves_png(tmp_path / "none", scores, np.zeros(3000)) == []
    assert not (tmp_path / "none").exists()
    assert _nonempty_png(plots.plot_score_histograms(tmp_path / "h", scores, None, {}))
    assert not list(tmp_path.rglob(".*"))  # no temp files left behind


def test_image_table_latent_and_loss_plots(tmp_path):
    rng = np.random.default_rng(4)
    imgs = rng.random((10, 1, 8, 8))
    assert _nonempty_png(figures.plot_reconstructions(tmp_path / "img.png", imgs, recon=imgs, image_shape=(1, 8, 8)))
    rgb = rng.random((3, 3, 4, 4))
    rgb_png = figures.plot_reconstructions(tmp_path / "rgb.png", rgb, recon=rgb, image_shape=(3, 4, 4), n=3)
    assert _nonempty_png(rgb_png)
    table = rng.normal(size=(20, 6))
    assert _nonempty_png(figures.plot_reconstructions(tmp_path / "tab.png", table, recon=table, image_shape=None))
    labels = rng.integers(0, 5, 200)
    for d in (1, 2, 6):
        codes = rng.normal(size=(200, d))
        assert _nonempty_png(figures.plot_latent_2d(tmp_path / f"z{d}.png", codes, labels=labels, seed=0))
    assert _nonempty_png(figures.plot_latent_2d(tmp_path / "nolab.png", codes, labels=None, seed=0))
    many = rng.integers(0, 50, 200)
    assert _nonempty_png(figures.plot_latent_2d(tmp_path / "many.png", codes, labels=many, seed=0))
    hist = {"train/loss": [1.0, 0.5, 0.3], "val/loss": [1.1, 0.6, 0.4]}
    assert _nonempty_png(figures.plot_loss_curves(tmp_path / "loss.png", hist))


# ---------------------------------------------------------------- scoring rule
def test_anomaly_scores_without_smoothing_is_per_row_mse():
    rng = np.random.default_rng(0)
    x, recon = rng.random((5, 1, 6, 6)), rng.random((5, 36))
    np.testing.assert_allclose(anomaly_scores(x, recon), ((x.reshape(5, -1) - recon) ** 2).mean(1))


def test_smoothing_discounts_misalignment_but_not_a_missing_part():
    """A stroke drawn one pixel off and a missing blob have the same plain MSE; smoothing splits them."""
    x = np.zeros((2, 1, 12, 12))
    x[:, 0, 2:10, 5] = 1.0  # a vertical stroke
    shifted = np.zeros_like(x[0])
    shifted[0, 2:10, 6] = 1.0  # the same stroke one pixel to the right: 16 wrong pixels
    missing = x[1].copy()
    missing[0, 2:10, 5] = 0.0  # stroke gone (8 wrong pixels) ...
    missing[0, 4:6, 8:12] = 1.0  # ... and an extra blob (8 wrong pixels): 16 wrong pixels
    recon = np.stack([shifted, missing])
    plain = anomaly_scores(x, recon)
    assert plain[0] == pytest.approx(plain[1])
    smooth = anomaly_scores(x, recon, smoothing=1.0, image_shape=(1, 12, 12))
    assert smooth[1] > 2 * smooth[0]
    assert (smooth < plain).all()  # smoothing never adds energy


def test_top_fraction_averages_the_largest_squared_residuals():
    x = np.zeros((2, 10))
    recon = np.array([[1, 2, 3, 4, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 5]], dtype=float)
    np.testing.assert_allclose(anomaly_scores(x, recon, top_fraction=0.2), [(16 + 9) / 2, 25 / 2])
    np.testing.assert_allclose(anomaly_scores(x, recon, top_fraction=1.0), [3.0, 2.5])
    np.testing.assert_allclose(anomaly_scores(x, recon, top_fraction=1e-6), [16.0, 25.0])  # at least one value
    # a local defect outranks diffuse noise of the same total energy once pooled
    diffuse, local = np.full((1, 10), 1.0), np.array([[np.sqrt(10.0)] + [0.0] * 9])
    assert anomaly_scores(x[:1], diffuse)[0] == pytest.approx(anomaly_scores(x[:1], local)[0])
    assert anomaly_scores(x[:1], local, top_fraction=0.1)[0] > 5 * anomaly_scores(x[:1], diffuse, top_fraction=0.1)[0]


def test_smoothing_keeps_channels_apart_and_needs_images():
    x = np.zeros((1, 2, 5, 5))
    x[0, 0, 2, 2] = 1.0
    one = anomaly_scores(x, np.zeros(50), smoothing=1.0, image_shape=(2, 5, 5))
    both = anomaly_scores(np.repeat(x[:, :1], 2, axis=1), np.zeros(50), smoothing=1.0, image_shape=(2, 5, 5))
    assert both[0] == pytest.approx(2 * one[0])  # no blur across channels
    with pytest.raises(ValueError, match="image data"):
        anomaly_scores(x.reshape(1, -1), np.zeros((1, 50)), smoothing=1.0)


def test_pca_baseline_is_scored_by_the_given_rule(digits_split):
    tr_x, tr_y, va_x, te_x, te_y, anom = digits_split
    cfg = EvaluateConfig(isolation_forest_trees=10, trustworthiness_max_rows=100)
    plain_m, plain = _baselines(digits_split, 8, cfg)
    smooth_m, smooth = _baselines(digits_split, 8, cfg, RuleScorer(ScoringRule(threshold=0.0, smoothing=0.8), image_shape=(1, 8, 8)).residual)
    assert (smooth["pca"] < plain["pca"]).all()  # smoothed residuals, lower scores and threshold
    assert smooth_m["pca"]["threshold"] < plain_m["pca"]["threshold"]
    assert smooth_m["pca"]["recon_mse"] == plain_m["pca"]["recon_mse"]  # reconstructions themselves unchanged
    np.testing.assert_allclose(plain["knn_distance"], smooth["knn_distance"])


def test_standardised_residuals_weigh_features_by_their_typical_error():
    from aeops.scoring.rule import residual_scale

    rng = np.random.default_rng(0)
    val = rng.normal(size=(500, 2))
    val_recon = val - rng.normal(size=(500, 2)) * [10.0, 0.1]  # feature 0 reconstructs 100x worse
    scale = residual_scale(val, val_recon)
    assert scale.shape == (1, 2) and scale[0] == pytest.approx([10.0, 0.1], rel=0.1)
    x = np.zeros((2, 2))
    recon = np.array([[5.0, 0.0], [0.0, 0.5]])  # half a typical error on 0 vs five typical errors on 1
    raw, std = anomaly_scores(x, recon), anomaly_scores(x, recon, scale=scale)
    assert raw[0] > raw[1] and std[1] > std[0]
    assert anomaly_scores(val, val_recon, scale=scale).mean() == pytest.approx(1.0)  # normal rows score ~1


def test_an_ensemble_scores_the_mean_of_its_members():
    rng = np.random.default_rng(1)
    x, members = rng.normal(size=(20, 4)), rng.normal(size=(3, 20, 4))
    each = [anomaly_scores(x, m) for m in members]
    np.testing.assert_allclose(anomaly_scores(x, members), np.mean(each, axis=0))
    scale = rng.uniform(0.5, 2, size=(3, 4))
    each = [anomaly_scores(x, m, scale=s[None]) for m, s in zip(members, scale)]
    np.testing.assert_allclose(anomaly_scores(x, members, scale=scale), np.mean(each, axis=0))
    with pytest.raises(ValueError, match="residual scale of shape"):
        anomaly_scores(x, members, scale=scale[:1])


def test_knn_term_distances_and_robust_fusion():
    from aeops.scoring.rule import fuse, robust_stats, weighted

    rng = np.random.default_rng(0)
    ref, x = rng.normal(size=(50, 3)), rng.normal(size=(7, 3))
    brute = np.sort(np.linalg.norm(x[:, None] - ref[None], axis=2), axis=1)[:, :5].mean(1)
    np.testing.assert_allclose(knn_distances(knn_index(ref, 5), x), brute, rtol=1e-12)
    assert len(knn_distances(knn_index(ref[:3], 5), x)) == 7  # k clamped to the reference rows
    residual, distance = rng.lognormal(size=200), 100 * rng.lognormal(size=200)  # unlike units
    stats = [robust_stats(residual), robust_stats(distance)]
    fused = fuse(residual, distance, stats)
    assert abs(np.median((residual - stats[0][0]) / stats[0][1])) < 1e-12  # each term is centred on normal rows
    assert np.corrcoef(fused, residual)[0, 1] > 0.3 and np.corrcoef(fused, distance)[0, 1] > 0.3  # neither dominates
    z = [(a - m) / s for a, (m, s) in zip((residual, distance), stats)]
    np.testing.assert_allclose(fused, z[0] + z[1])
    np.testing.assert_allclose(fuse(residual, distance, weighted(stats, 4.0)), z[0] + 4 * z[1])  # the distance ×4
    flat = robust_stats(np.ones(10))
    assert flat[0] == 1.0 and flat[1] > 0 and np.isfinite(fuse(np.ones(3), np.ones(3), [flat, flat])).all()
