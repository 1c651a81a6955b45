"""Evaluation plots (PNG: ROC, PR, score histograms) and curve CSVs for `dvc plots`; every write is atomic.

Figures are plain `matplotlib.figure.Figure` objects rendered by the Agg canvas: no pyplot, no GUI
backend, no global figure registry, so nothing stays open (headless- and thread-safe).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from aeops.evaluation.metrics import has_two_classes
from aeops.figures import save
from aeops.io import atomic_path

MAX_CURVE_POINTS = 500
MAX_SCATTER_POINTS = 5000


def _downsample(*cols: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> list[np.ndarray]:
    """Evenly spaced rows (first and last kept) when a curve has more than max_points."""
    n = len(cols[0])
    if n <= max_points:
        return list(cols)
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return [c[idx] for c in cols]


def _write_csv(path: Path, header: tuple[str, str], a: np.ndarray, b: np.ndarray) -> Path:
    lines = [",".join(header)] + [f"{x:.6g},{y:.6g}" for x, y in zip(a, b)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def _curves(scores: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    fpr, tpr, _ = roc_curve(y, scores)
    precision, recall, _ = precision_recall_curve(y, scores)
    return {"roc": (fpr, tpr), "pr": (recall, precision)}


def write_curve_csvs(
    out_dir: str | Path, scores_by_method: dict[str, np.ndarray], is_anomaly: np.ndarray | None
) -> list[Path]:
    """`roc_<method>.csv` (fpr,tpr) and `pr_<method>.csv` (recall,precision), ≤ ~500 rows each.

    Nothing is written (returns []) when labels are missing or single-class.
    """
    if not has_two_classes(is_anomaly):
        return []
    y = np.asarray(is_anomaly).astype(bool)
    headers = {"roc": ("fpr", "tpr"), "pr": ("recall", "precision")}
    paths = []
    for method, scores in scores_by_method.items():
        for kind, (a, b) in _curves(np.asarray(scores), y).items():
            a, b = _downsample(a, b)
            paths.append(_write_csv(Path(out_dir) / f"{kind}_{method}.csv", headers[kind], a, b))
    return paths


def plot_curves_png(
    out_dir: str | Path, scores_by_method: dict[str, np.ndarray], is_anomaly: np.ndarray | None
) -> list[Path]:
    """roc.png and pr.png: a line per method, AUROC/AUPRC in the legend ([] without labels)."""
    if not has_two_classes(is_anomaly):
        return []
    y = np.asarray(is_anomaly).astype(bool)
    roc_fig, pr_fig = Figure(figsize=(5, 5)), Figure(figsize=(5, 5))
    roc_ax, pr_ax = roc_fig.add_subplot(), pr_fig.add_subplot()
    for method, scores in scores_by_method.items():
        curves = _curves(np.asarray(scores), y)
        roc_ax.plot(*curves["roc"], label=f"{method} (AUROC {roc_auc_score(y, scores):.3f})")
        pr_ax.plot(
            *curves["pr"], label=f"{method} (AUPRC {average_precision_score(y, scores):.3f})"
        )
    roc_ax.plot([0, 1], [0, 1], "k:", lw=1)
    pr_ax.axhline(y.mean(), color="k", ls=":", lw=1)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="best", fontsize="small")
    out_dir = Path(out_dir)
    return [save(roc_fig, out_dir / "roc.png"), save(pr_fig, out_dir / "pr.png")]


def plot_score_histograms(
    out_dir: str | Path,
    scores_by_method: dict[str, np.ndarray],
    is_anomaly: np.ndarray | None,
    thresholds: dict[str, float | None],
) -> Path:
    """score_histograms.png: per method, normal vs anomalous test scores and the threshold line."""
    n = max(len(scores_by_method), 1)
    fig = Figure(figsize=(4 * n, 3.2))
    axes = fig.subplots(1, n, squeeze=False)[0]
    y = None if is_anomaly is None else np.asarray(is_anomaly).astype(bool)
    for ax, (method, scores) in zip(axes, scores_by_method.items()):
        scores = np.asarray(scores, dtype=np.float64)
        bins = np.histogram_bin_edges(scores, bins=40)
        if y is None:
            ax.hist(scores, bins=bins, alpha=0.7, label="test")
        else:
            ax.hist(scores[~y], bins=bins, alpha=0.6, density=True, label="normal")
            if y.any():
                ax.hist(scores[y], bins=bins, alpha=0.6, density=True, label="anomalous")
        if thresholds.get(method) is not None:
            ax.axvline(thresholds[method], color="k", ls="--", label="threshold")
        ax.set(title=method, xlabel="anomaly score")
        ax.legend(fontsize="small")
    return save(fig, Path(out_dir) / "score_histograms.png")
