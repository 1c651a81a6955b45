"""Evaluation plots (PNG) and curve CSVs for `dvc plots`; every write is atomic.

Figures are plain `matplotlib.figure.Figure` objects rendered by the Agg canvas: no pyplot, no GUI
backend, no global figure registry, so nothing stays open (headless- and thread-safe).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from aeops.evaluation.metrics import has_two_classes
from aeops.io import atomic_path

MAX_CURVE_POINTS = 500
MAX_SCATTER_POINTS = 5000


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    fig.clear()
    return path


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
    return [_save(roc_fig, out_dir / "roc.png"), _save(pr_fig, out_dir / "pr.png")]


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
    return _save(fig, Path(out_dir) / "score_histograms.png")


def _as_image(row: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Reshape a row to 2-D (grey) or HxWxC; channel-first shapes are moved last."""
    img = np.asarray(row).reshape(shape)
    if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[-1] not in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)
    return img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img


def plot_reconstructions(
    path: str | Path,
    x: np.ndarray,
    recon: np.ndarray,
    image_shape: tuple[int, ...] | None,
    errors: np.ndarray | None = None,
    n: int = 8,
) -> Path:
    """Inputs vs reconstructions of the first n rows, each labelled with its error when given."""
    x, recon = np.asarray(x)[:n], np.asarray(recon)[:n]
    lo, hi = float(min(x.min(), recon.min())), float(max(x.max(), recon.max()))
    errs = None if errors is None else np.asarray(errors)[:n]
    if image_shape is None:
        fig = Figure(figsize=(10, 0.4 * len(x) + 1.5))
        axes = fig.subplots(1, 2)
        for ax, data, title in zip(axes, (x, recon), ("inputs", "reconstructions")):
            im = ax.imshow(data.reshape(len(data), -1), aspect="auto", vmin=lo, vmax=hi)
            ax.set(title=title, xlabel="feature", ylabel="row")
        if errs is not None:
            axes[1].set_yticks(range(len(x)), [f"MSE {e:.3g}" for e in errs], fontsize="small")
            axes[1].yaxis.tick_right()
        fig.colorbar(im, ax=list(axes), location="bottom", shrink=0.6, label="scaled value")
        return _save(fig, path)
    fig = Figure(figsize=(1.25 * len(x), 2.9))
    axes = fig.subplots(2, len(x), squeeze=False)
    for j in range(len(x)):
        for i, data in enumerate((x, recon)):
            img = _as_image(data[j], tuple(image_shape))
            if img.ndim == 3:  # colour: rescale jointly to [0, 1]
                axes[i, j].imshow(np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1))
            else:
                axes[i, j].imshow(img, cmap="gray", vmin=lo, vmax=hi)
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
        if errs is not None:
            axes[1, j].set_xlabel(f"MSE {errs[j]:.3g}", fontsize="small")
    axes[0, 0].set_ylabel("input", fontsize="small")
    axes[1, 0].set_ylabel("reconstruction", fontsize="small")
    return _save(fig, path)


def _project_2d(codes: np.ndarray, seed: int) -> tuple[np.ndarray, str, str]:
    codes = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if codes.shape[1] == 1:
        jitter = np.random.default_rng(seed).uniform(-0.5, 0.5, len(codes))
        return np.column_stack([codes[:, 0], jitter]), "z[0]", "jitter"
    if codes.shape[1] == 2:
        return codes, "z[0]", "z[1]"
    return PCA(n_components=2, random_state=seed).fit_transform(codes), "PC 1", "PC 2"


def plot_latent_2d(
    path: str | Path, codes: np.ndarray, labels: np.ndarray | None, seed: int,
    is_anomaly: np.ndarray | None = None,
) -> Path:
    """Scatter of codes in 2-D (PCA when latent_dim > 2; 1-D against jitter), coloured by label.

    Anomalies (when flagged) are ringed in black; the legend sits outside the axes, off the points.
    """
    codes = np.asarray(codes)
    rng = np.random.default_rng(seed)
    idx = np.arange(len(codes))
    if len(idx) > MAX_SCATTER_POINTS:
        idx = np.sort(rng.choice(len(idx), MAX_SCATTER_POINTS, replace=False))
    xy, xlabel, ylabel = _project_2d(codes[idx], seed)
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6)
    else:
        classes, inv = np.unique(np.asarray(labels)[idx], return_inverse=True)
        if len(classes) <= 20:
            cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
            for k, cls in enumerate(classes):
                m = inv == k
                ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.7, color=cmap(k), label=str(cls))
        else:
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(labels)[idx], s=6, cmap="viridis")
            fig.colorbar(sc, ax=ax, label="label")
    if is_anomaly is not None and np.asarray(is_anomaly)[idx].any():
        bad = np.asarray(is_anomaly)[idx].astype(bool)
        ax.scatter(xy[bad, 0], xy[bad, 1], s=28, facecolors="none", edgecolors="black", linewidths=0.8,
                   label="anomaly")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="label" if labels is not None else None, fontsize="small", markerscale=2,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set(xlabel=xlabel, ylabel=ylabel, title="latent space (test split)")
    return _save(fig, path)


def plot_loss_curves(path: str | Path, history: dict[str, list[float]]) -> Path:
    """Train (solid) vs val (dashed) per loss against epoch; `recon_loss` only where it differs from `loss`."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    colours = {"loss": "tab:blue", "recon_loss": "tab:orange", "reg_loss": "tab:green"}
    for name, values in history.items():
        stage, _, part = name.partition("/")
        values = np.asarray(values, dtype=np.float64)
        total = np.asarray(history.get(f"{stage}/loss", []), dtype=np.float64)
        if not len(values) or (part != "loss" and total.shape == values.shape and np.allclose(total, values)):
            continue
        ax.plot(np.arange(len(values)), values, ls="-" if stage == "train" else "--", marker=".",
                color=colours.get(part), label=f"{stage} {part.replace('_', ' ')}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="loss (mean over rows)", title="training curves: train vs validation")
    return _save(fig, path)
