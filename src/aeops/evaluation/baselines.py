"""Classical baselines on the autoencoder's split, reported with the autoencoder's metric keys.

`model_metrics` assembles the full metric dict for any encoder/decoder (the autoencoder or PCA),
so the two entries always have identical keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from aeops.config import EvaluateConfig
from aeops.data.prepared import Split
from aeops.evaluation.metrics import (
    anomaly_metrics,
    compression_metrics,
    embedding_metrics,
    quantize_codes,
    reconstruction_metrics,
)
from aeops.scoring.rule import anomaly_scores, choose_threshold, knn_distances, knn_index

QUANT_BITS = 8
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x, recon) -> (n,) scores
ScoreMaker = Callable[[np.ndarray, np.ndarray], ScoreFn]  # (normal val rows, their recon) → score function


def _flat(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1)


@dataclass(frozen=True)
class Coded:
    """One encoder/decoder's outputs on the splits (the autoencoder or PCA)."""

    train_codes: np.ndarray
    test_codes: np.ndarray
    test_recon: np.ndarray
    test_recon_quantized: np.ndarray | None  # from 8-bit-quantised codes (None → quantized_psnr None)
    val_scores: np.ndarray  # scores of NORMAL validation rows: they set the threshold
    test_scores: np.ndarray


def model_metrics(coded: Coded, *, train: Split, test: Split, latent_dim: int, data_range: float,
                  cfg: EvaluateConfig) -> dict:
    """All metrics of one encoder/decoder on the test split.

    Keys: recon_mse, psnr, quantized_psnr, auroc, auprc, precision, recall, f1, threshold,
    knn_accuracy, trustworthiness, latent_dim, compression_ratio, bits_per_value. The threshold is
    cfg.threshold_percentile of `coded.val_scores`.
    """
    out = reconstruction_metrics(test.x, coded.test_recon, data_range)
    out["quantized_psnr"] = (
        None
        if coded.test_recon_quantized is None
        else reconstruction_metrics(test.x, coded.test_recon_quantized, data_range)["psnr"]
    )
    threshold = choose_threshold(coded.val_scores, cfg.threshold_percentile)
    out |= anomaly_metrics(coded.test_scores, test.is_anomaly, threshold)
    out |= embedding_metrics(
        coded.train_codes, train.labels, test_x=test.x, test_codes=coded.test_codes, test_labels=test.labels,
        n_neighbors=cfg.knn_neighbors, max_rows=cfg.trustworthiness_max_rows, seed=cfg.seed,
    )
    n_features = int(np.prod(np.shape(test.x)[1:]))
    out |= compression_metrics(n_features, latent_dim, QUANT_BITS)
    return out


def _pca(train: Split, val_x: np.ndarray, *, test: Split, latent_dim: int, data_range: float, cfg: EvaluateConfig,
         make_score: ScoreMaker) -> tuple[dict, np.ndarray]:
    """PCA as a linear autoencoder with the model's code size, scored by `score`.

    Components: min(latent_dim, n_features - 1, n_train); never as many as features, where PCA would
    reconstruct exactly and its anomaly "scores" would be rounding noise.
    """
    k = max(1, min(latent_dim, train.x.shape[1] - 1, train.x.shape[0]))
    pca = PCA(n_components=k, random_state=cfg.seed).fit(train.x)
    train_codes, test_codes = pca.transform(train.x), pca.transform(test.x)
    test_recon = pca.inverse_transform(test_codes)
    lo, hi = train_codes.min(axis=0), train_codes.max(axis=0)
    val_recon = pca.inverse_transform(pca.transform(val_x))
    score = make_score(val_x, val_recon)  # PCA's own residual scale where residuals are standardised
    coded = Coded(
        train_codes=train_codes, test_codes=test_codes, test_recon=test_recon,
        test_recon_quantized=pca.inverse_transform(quantize_codes(test_codes, lo, hi, QUANT_BITS)),
        val_scores=score(val_x, val_recon), test_scores=score(test.x, test_recon),
    )
    return model_metrics(coded, train=train, test=test, latent_dim=k, data_range=data_range, cfg=cfg), coded.test_scores


def _score_only(
    val_scores: np.ndarray, test_scores: np.ndarray, is_anomaly: np.ndarray | None, pct: float
) -> dict:
    return anomaly_metrics(test_scores, is_anomaly, choose_threshold(val_scores, pct))


def isolation_forest_scores(
    train_x: np.ndarray, xs: list[np.ndarray], cfg: EvaluateConfig
) -> list[np.ndarray]:
    """Isolation Forest fitted on train; score = -score_samples (higher = more anomalous)."""
    forest = IsolationForest(n_estimators=cfg.isolation_forest_trees, random_state=cfg.seed)
    forest.fit(train_x)
    return [-forest.score_samples(x) for x in xs]


def knn_distance_scores(
    train_x: np.ndarray, xs: list[np.ndarray], cfg: EvaluateConfig
) -> list[np.ndarray]:
    """Mean distance to the k nearest TRAIN rows (k = cfg.knn_neighbors, clamped to n_train)."""
    index = knn_index(train_x, cfg.knn_neighbors)
    return [knn_distances(index, x) for x in xs]


def run_baselines(
    *,
    train: Split, val_x: np.ndarray, test: Split, latent_dim: int, data_range: float, cfg: EvaluateConfig,
    make_score: ScoreMaker = lambda val_x, val_recon: anomaly_scores, knn: list[np.ndarray] | None = None,
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Run PCA, Isolation Forest and kNN-distance baselines.

    Inputs may be (n, features) or images (n, ...); they are flattened. `val_x` must hold only
    normal rows (it sets each method's threshold). Returns `(metrics, test_scores)`, both keyed
    by "pca", "isolation_forest", "knn_distance"; `test_scores[method]` is the (n_test,) anomaly
    score array (for plots). "pca" has the same keys as `model_metrics`; the others only
    the anomaly keys. `knn`: the kNN distances of [val_x, test] where the caller measured them already
    (same train rows, same k), so the index is not fitted twice.
    """
    train = Split(_flat(train.x), train.labels, train.is_anomaly)
    test = Split(_flat(test.x), test.labels, test.is_anomaly)
    val_x = _flat(val_x)
    metrics: dict[str, dict] = {}
    scores: dict[str, np.ndarray] = {}
    metrics["pca"], scores["pca"] = _pca(
        train, val_x, test=test, latent_dim=latent_dim, data_range=data_range, cfg=cfg, make_score=make_score
    )
    scorers = {"isolation_forest": isolation_forest_scores, "knn_distance": knn_distance_scores}
    for name, fn in scorers.items():
        val_s, test_s = knn if name == "knn_distance" and knn is not None else fn(train.x, [val_x, test.x], cfg)
        metrics[name] = _score_only(val_s, test_s, test.is_anomaly, cfg.threshold_percentile)
        scores[name] = test_s
    return metrics, scores
