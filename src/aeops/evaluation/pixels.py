"""Localisation metrics, as MVTec AD measures them: pixel AUROC and AUPRO, over every pixel of the test images.

Pixel AUROC ranks all pixels of all test images (normal images included) by their anomaly-map value
against the ground-truth masks. AUPRO weighs every defect region alike, whatever its size: at each
threshold the per-region overlap (the share of a connected region's pixels above the threshold) is
averaged over all regions, and that curve is integrated against the false-positive rate on normal
pixels up to `max_fpr` (0.3) and divided by it, so a perfect map scores 1 and a random one about 0.15.
"""

from __future__ import annotations

import numpy as np

MAX_FPR = 0.3  # the MVTec AD paper's integration limit


def channel_maps(maps: np.ndarray, image_shape: tuple[int, int, int] | list[int]) -> np.ndarray:
    """(n, c·h·w) per-value maps (`RuleScorer.anomaly_map`) → (n, h, w), the mean over channels."""
    c, h, w = image_shape
    return np.asarray(maps, np.float64).reshape(len(maps), c, h, w).mean(axis=1)


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """AUROC of every pixel's map value against its mask (1 = defect); NaN without both kinds of pixel."""
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(masks).ravel() > 0
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, np.asarray(maps, np.float64).ravel()))


def regions(masks: np.ndarray) -> np.ndarray:
    """(n, h, w) int64: each mask's 8-connected defect regions numbered 1.. across all images, 0 = normal."""
    from scipy.ndimage import label

    out = np.zeros(np.shape(masks), np.int64)
    count = 0
    for i, mask in enumerate(np.asarray(masks) > 0):
        labelled, found = label(mask, structure=np.ones((3, 3), int))
        out[i] = np.where(labelled > 0, labelled + count, 0)
        count += found
    return out


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate on normal pixels, mean per-region overlap) at every distinct map value, from
    (0, 0) up; exact: every pixel at or above a threshold counts, ties taken together."""
    ids = regions(masks).ravel()
    values = np.asarray(maps, np.float64).ravel()
    n_regions = int(ids.max())
    if n_regions == 0 or (ids > 0).all():
        raise ValueError("AUPRO needs defect regions and normal pixels in the masks")
    sizes = np.bincount(ids)
    order = np.argsort(-values, kind="stable")
    ids, values = ids[order], values[order]
    weight = np.where(ids > 0, 1.0 / (n_regions * sizes[ids]), 0.0)  # a region's pixels sum to 1 / regions
    fpr = np.cumsum(ids == 0) / float(sizes[0])
    pro = np.cumsum(weight)
    last = np.r_[values[1:] != values[:-1], True]  # the end of each group of equal values
    return np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]


def aupro(maps: np.ndarray, masks: np.ndarray, max_fpr: float = MAX_FPR) -> float:
    """Area under the per-region-overlap curve up to `max_fpr`, divided by `max_fpr` (1 = perfect);
    NaN without defect regions or normal pixels."""
    try:
        fpr, pro = pro_curve(maps, masks)
    except ValueError:
        return float("nan")
    cut = np.searchsorted(fpr, max_fpr, side="right")
    x, y = fpr[:cut], pro[:cut]
    if cut < len(fpr) and x[-1] < max_fpr:  # the curve's value at max_fpr, on the segment that crosses it
        x0, x1, y0, y1 = fpr[cut - 1], fpr[cut], pro[cut - 1], pro[cut]
        x, y = np.r_[x, max_fpr], np.r_[y, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)]
    return float(np.trapezoid(y, x) / max_fpr)


def pixel_baseline(train_x: np.ndarray, image_shape: tuple[int, int, int] | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The per-pixel baseline's statistics: each input value's mean and spread over the training images."""
    x = np.asarray(train_x, np.float64).reshape(len(train_x), -1)
    sd = x.std(axis=0)
    return x.mean(axis=0), np.maximum(sd, max(float(sd.mean()) * 1e-3, 1e-12))


def baseline_maps(x: np.ndarray, stats: tuple[np.ndarray, np.ndarray],
                  image_shape: tuple[int, int, int] | list[int]) -> np.ndarray:
    """(n, h, w): each pixel's squared z-score against the training images' per-pixel mean and spread."""
    mean, sd = stats
    z = (np.asarray(x, np.float64).reshape(len(x), -1) - mean) / sd
    return channel_maps(z**2, image_shape)


def pixel_threshold(normal_maps: np.ndarray, percentile: float) -> float:
    """The map value that at most (100 - percentile) % of normal images exceed anywhere: the percentile of
    their per-image maxima. A normal image below the image threshold then usually shows an empty mask too."""
    peaks = np.asarray(normal_maps, np.float64).reshape(len(normal_maps), -1).max(axis=1)
    return float(np.percentile(peaks, percentile))


def localisation_metrics(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """{'pixel_auroc', 'aupro'} of (n, h, w) maps against their masks."""
    return {"pixel_auroc": pixel_auroc(maps, masks), "aupro": aupro(maps, masks)}
