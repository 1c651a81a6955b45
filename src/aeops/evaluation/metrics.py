"""Metrics on numpy arrays: reconstruction, anomaly detection, embeddings, compression.

Every returned value is a plain Python float/int (JSON-ready) or None when it does not apply.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.manifold import trustworthiness
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

ANOMALY_KEYS = ("auroc", "auprc", "precision", "recall", "f1", "threshold")


def _flat(a: np.ndarray) -> np.ndarray:
    """(n, ...) -> (n, features) float64."""
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1)


def has_two_classes(is_anomaly: np.ndarray | None) -> bool:
    """True when binary anomaly labels are given and contain both classes."""
    return is_anomaly is not None and len(np.unique(np.asarray(is_anomaly))) == 2


def reconstruction_metrics(x: np.ndarray, recon: np.ndarray, data_range: float) -> dict:
    """Mean squared error over all values and PSNR = 10·log10(data_range² / mse).

    PSNR is None when mse == 0 (infinite) or data_range <= 0.
    """
    mse = float(np.mean((np.asarray(x, np.float64) - np.asarray(recon, np.float64)) ** 2))
    return {"recon_mse": mse, "psnr": psnr(mse, data_range)}


def psnr(mse: float, data_range: float) -> float | None:
    """10·log10(data_range² / mse); None when mse == 0 (infinite) or data_range <= 0."""
    return 10.0 * math.log10(data_range**2 / mse) if mse > 0 and data_range > 0 else None


def anomaly_metrics(
    test_scores: np.ndarray, test_is_anomaly: np.ndarray | None, threshold: float | None
) -> dict:
    """AUROC, AUPRC and precision/recall/F1 of `score > threshold` (higher score = more anomalous).

    All values but the threshold are None when labels are missing or single-class (the threshold
    comes from validation data alone, and serving needs it); precision/recall/f1 are None
    when `threshold` is None.
    """
    if not has_two_classes(test_is_anomaly):
        return dict.fromkeys(ANOMALY_KEYS) | {"threshold": None if threshold is None else float(threshold)}
    y = np.asarray(test_is_anomaly).astype(bool)
    s = np.asarray(test_scores, dtype=np.float64).ravel()
    out = {
        "auroc": float(roc_auc_score(y, s)),
        "auprc": float(average_precision_score(y, s)),
        "precision": None,
        "recall": None,
        "f1": None,
        "threshold": None if threshold is None else float(threshold),
    }
    if threshold is not None:
        p, r, f, _ = precision_recall_fscore_support(
            y, s > threshold, average="binary", zero_division=0
        )
        out.update(precision=float(p), recall=float(r), f1=float(f))
    return out


def knn_accuracy(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    *,
    test_codes: np.ndarray,
    test_labels: np.ndarray,
    n_neighbors: int,
) -> float | None:
    """Accuracy of a kNN classifier on train codes, over test rows whose class was seen in train."""
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    seen = np.isin(test_labels, train_labels)
    if not seen.any() or len(train_labels) == 0:
        return None
    knn = KNeighborsClassifier(n_neighbors=min(n_neighbors, len(train_labels)))
    knn.fit(_flat(train_codes), train_labels)
    return float(np.mean(knn.predict(_flat(test_codes)[seen]) == test_labels[seen]))


def subsample_trustworthiness(
    x: np.ndarray, codes: np.ndarray, *, n_neighbors: int, max_rows: int, seed: int
) -> float | None:
    """sklearn trustworthiness on a seeded subsample of ≤ max_rows rows (k clamped below n/2)."""
    n = len(x)
    rows = min(n, max_rows)
    k = min(n_neighbors, (rows - 1) // 2)  # sklearn requires n_neighbors < n_samples / 2
    if k < 1:
        return None
    idx = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    return float(trustworthiness(_flat(x)[idx], _flat(codes)[idx], n_neighbors=k))


def embedding_metrics(
    train_codes: np.ndarray,
    train_labels: np.ndarray | None,
    *,
    test_x: np.ndarray,
    test_codes: np.ndarray,
    test_labels: np.ndarray | None,
    n_neighbors: int,
    max_rows: int,
    seed: int,
) -> dict:
    """kNN accuracy of codes (None without labels) and trustworthiness of test codes vs inputs."""
    acc = None
    if train_labels is not None and test_labels is not None:
        acc = knn_accuracy(train_codes, train_labels, test_codes=test_codes, test_labels=test_labels, n_neighbors=n_neighbors)
    trust = subsample_trustworthiness(test_x, test_codes, n_neighbors=n_neighbors, max_rows=max_rows, seed=seed)
    return {"knn_accuracy": acc, "trustworthiness": trust}


def quantize_codes(
    codes: np.ndarray, lo: np.ndarray, hi: np.ndarray, bits: int = 8
) -> np.ndarray:
    """Quantise each dimension uniformly to 2**bits levels on [lo, hi] (clipped) and dequantise.

    `lo`/`hi` come from TRAIN codes. Error is ≤ (hi - lo) / (2 * (2**bits - 1)) inside [lo, hi];
    a constant dimension (hi == lo) maps to lo.
    """
    codes = np.asarray(codes, dtype=np.float64)
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), codes.shape[1:])
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), codes.shape[1:])
    levels = 2**bits - 1
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    q = np.rint((np.clip(codes, lo, hi) - lo) / safe * levels)
    return np.where(span > 0, lo + q / levels * safe, lo)


def compression_metrics(n_features: int, latent_dim: int, bits: int = 8) -> dict:
    """Compression of n_features inputs into latent_dim values of `bits` bits each."""
    return {
        "latent_dim": int(latent_dim),
        "compression_ratio": float(n_features / latent_dim),
        "bits_per_value": float(bits * latent_dim / n_features),
    }
