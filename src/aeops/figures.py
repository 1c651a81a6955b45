"""Figures of a model itself (PNG): reconstructions, the latent space, loss curves; shared by the training
run's artifacts and the evaluation report. Every write is atomic.

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

from aeops.io import atomic_path

MAX_SCATTER_POINTS = 5000


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    fig.clear()
    return path


def _as_image(row: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Reshape a row to 2-D (grey) or HxWxC; channel-first shapes are moved last."""
    img = np.asarray(row).reshape(shape)
    if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[-1] not in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)
    return img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img


def plot_reconstructions(
    path: str | Path,
    x: np.ndarray,
    *,
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
        return save(fig, path)
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
    return save(fig, path)


def _project_2d(codes: np.ndarray, seed: int) -> tuple[np.ndarray, str, str]:
    codes = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if codes.shape[1] == 1:
        jitter = np.random.default_rng(seed).uniform(-0.5, 0.5, len(codes))
        return np.column_stack([codes[:, 0], jitter]), "z[0]", "jitter"
    if codes.shape[1] == 2:
        return codes, "z[0]", "z[1]"
    return PCA(n_components=2, random_state=seed).fit_transform(codes), "PC 1", "PC 2"


def plot_latent_2d(
    path: str | Path, codes: np.ndarray, *, labels: np.ndarray | None, seed: int,
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
    return save(fig, path)


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
    return save(fig, path)


def heatmap_rgb(image: np.ndarray, amap: np.ndarray, *, threshold: float, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """(h, w, 3) uint8: the image in grey (colour kept) under its anomaly map in colour (matplotlib's inferno);
    the map's colour runs from 0 to twice the pixel `threshold`, so the threshold is the middle of the scale, and
    a pixel's heat shows more strongly the hotter it is. `lo`, `hi`: the image's value range (to [0, 1])."""
    base = np.clip((np.asarray(image, np.float64) - lo) / max(hi - lo, 1e-12), 0, 1)
    base = np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base[..., :3]
    heat = np.clip(np.asarray(amap, np.float64) / max(2.0 * threshold, 1e-12), 0, 1)
    colour = matplotlib.colormaps["inferno"](heat)[..., :3]
    alpha = (0.25 + 0.5 * heat)[..., None]
    return np.round(255 * ((1 - alpha) * base + alpha * colour)).astype(np.uint8)


def plot_heatmaps(path: str | Path, x: np.ndarray, maps: np.ndarray, *, image_shape: tuple[int, ...],
                  threshold: float, masks: np.ndarray | None = None, scores: np.ndarray | None = None) -> Path:
    """Per image (a column): the input, its anomaly map over it, the predicted mask (map > threshold) and, where
    known, the true mask. `maps`: (n, h, w)."""
    x = np.asarray(x)
    lo, hi = float(x.min()), float(x.max())
    rows = ["input", "anomaly map", "predicted mask"] + (["true mask"] if masks is not None else [])
    fig = Figure(figsize=(1.25 * len(x), 1.45 * len(rows)))
    axes = fig.subplots(len(rows), len(x), squeeze=False)
    for j in range(len(x)):
        img = _as_image(x[j], image_shape)
        shown = [np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1), heatmap_rgb(img, maps[j], threshold=threshold, lo=lo, hi=hi),
                 maps[j] > threshold] + ([masks[j] > 0] if masks is not None else [])
        for i, data in enumerate(shown):
            axes[i, j].imshow(data, cmap="gray", vmin=0, vmax=1) if data.ndim == 2 else axes[i, j].imshow(data)
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
        if scores is not None:
            axes[-1, j].set_xlabel(f"score {scores[j]:.3g}", fontsize="small")
    for i, name in enumerate(rows):
        axes[i, 0].set_ylabel(name, fontsize="small")
    return save(fig, path)
