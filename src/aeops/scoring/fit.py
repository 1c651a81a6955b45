"""Fit a `ScoringRule` on validation data once: the residual scale, the kNN term and the threshold.

A reconstruction residual misses anomalies that lie near the learned manifold but far from any
training row, and a kNN distance misses those a wide cloud of normal rows hides. `auto` keeps the
fused score on tables where it separates validation anomalies better than the residual alone (the
labelled ones prepare held out of test, else synthetic ones made from normal validation rows), with
the distance weighted by the one of `knn_weights` that separates them best; a tie keeps the lighter
rule. Images keep the residual (a pixel kNN needs the training images in the model, and was not
measured). Nothing here reads test rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from aeops.models.layout import Layout
from aeops.scoring.rule import (
    RuleScorer,
    ScoringRule,
    choose_threshold,
    estimate_contamination,
    fuse,
    knn_distances,
    knn_index,
    residual_scale,
    robust_stats,
    weighted,
)

Reconstruct = Callable[[np.ndarray], np.ndarray]  # rows → (members, n, ...) reconstructions


@dataclass(frozen=True)
class RuleSettings:
    """What the fit may choose from (params.yaml's `evaluate.score_*`, `knn_*` and `threshold_percentile`)."""

    smoothing: float = 0.0
    top_fraction: float = 1.0
    standardize: bool | Literal["auto"] = "auto"  # auto: standardised residuals for tables, plain ones for images
    neighbors: bool | Literal["auto"] = "auto"  # the kNN term: always, never, or where it helps on validation
    k: int = 10
    knn_weights: Sequence[float] = (1.0,)
    threshold_percentile: float = 95.0
    # validation rows are contaminated (no labels): the threshold flags this share of them instead (auto: estimated)
    contamination: float | Literal["auto"] | None = None

    def standardized(self, image_shape: Sequence[int] | None) -> bool:
        return image_shape is None if self.standardize == "auto" else bool(self.standardize)


@dataclass(frozen=True)
class FittedRule:
    """The rule, ready to apply, with the normal validation scores it was fitted on and why it was chosen."""

    rule: ScoringRule
    scorer: RuleScorer
    val_scores: np.ndarray
    choice: str  # which rule, and the validation AUROCs it was chosen by
    weight: float = 0.0  # the distance term's weight against the residual's (0: not used)
    index: NearestNeighbors | None = field(default=None, repr=False)  # of the training rows, where the fit measured
    val_distances: np.ndarray | None = None  # kNN distances of the normal validation rows, where measured

    @property
    def reference(self) -> np.ndarray | None:
        """(n, features) float32 scaled training rows the kNN term measures against; None without one."""
        return None if self.scorer.index is None else self.scorer.reference

    def distances(self, x: np.ndarray) -> np.ndarray | None:
        """kNN distances of these rows to the training rows, where the fit measured them (a baseline reuses them)."""
        return None if self.index is None else knn_distances(self.index, x)


def residual_rule(settings: RuleSettings, *, image_shape: Sequence[int] | None, val_x: np.ndarray,
                  val_recon: np.ndarray, layout: dict | None = None) -> RuleScorer:
    """The residual part alone, its scale fitted on normal validation rows and their reconstructions
    (the model's, or a baseline's such as PCA: each method gets its own scale). No threshold yet.
    `layout`: a mixed-type table's feature groups (the residual is then one per column)."""
    scale = (residual_scale(val_x, val_recon, smoothing=settings.smoothing, image_shape=image_shape,
                            layout=Layout.from_dict(layout))
             if settings.standardized(image_shape) else None)
    rule = ScoringRule(threshold=float("nan"), smoothing=settings.smoothing, top_fraction=settings.top_fraction,
                       threshold_percentile=settings.threshold_percentile,
                       residual_scale=None if scale is None else scale.tolist(), layout=layout)
    return RuleScorer(rule, image_shape=image_shape)


def fit_rule(settings: RuleSettings, *, image_shape: Sequence[int] | None, train_x: np.ndarray, val_x: np.ndarray,
             val_recon: np.ndarray, reconstruct: Reconstruct,
             anomalies: Callable[[], tuple[np.ndarray, str]], layout: dict | None = None) -> FittedRule:
    """The full rule: `residual_rule`, then the kNN term (`settings.neighbors`), then the threshold at
    `threshold_percentile` of the normal validation scores. `val_x` holds normal rows only; `anomalies()`
    gives validation anomalies and their kind ("labelled", "synthetic"), asked for only where `auto` compares."""
    residual = residual_rule(settings, image_shape=image_shape, val_x=val_x, val_recon=val_recon, layout=layout)
    val_res = residual.residual(val_x, val_recon)
    use = settings.neighbors
    if use is False or (use == "auto" and image_shape):
        return _final(residual.rule, val_res, image_shape=image_shape, choice="residual", settings=settings)
    if image_shape:
        raise ValueError("a kNN term needs table data (it keeps the training rows in the model)")
    index = knn_index(train_x, settings.k)
    val_d = knn_distances(index, val_x)
    stats = [robust_stats(val_res), robust_stats(val_d)]
    if use is True:
        weight, why = 1.0, ""
    else:
        x, kind = anomalies()
        a_res, a_d = residual.residual(x, reconstruct(x)), knn_distances(index, x)
        plain = best = validation_auroc(val_res, a_res)
        weight, tried = 0.0, []
        for w in settings.knn_weights:  # a tie keeps the lighter rule: the residual alone, then the smaller weight
            s = weighted(stats, w)
            auroc = validation_auroc(fuse(val_res, val_d, s), fuse(a_res, a_d, s))
            tried.append(f"×{w:g} {auroc:.4f}")
            if auroc > best:
                weight, best = w, auroc
        why = f"validation AUROC on {len(x)} {kind} anomalies: residual {plain:.4f}, + kNN distance {', '.join(tried)}"
    if not weight:
        return _final(residual.rule, val_res, image_shape=image_shape, choice=f"residual ({why})", index=index,
                      val_distances=val_d, settings=settings)
    chosen = weighted(stats, weight)
    name = "residual + kNN distance" + ("" if weight == 1 else f" ×{weight:g}") + (f" ({why})" if why else "")
    rule = replace(residual.rule, neighbors=settings.k, fusion=chosen)
    return _final(rule, fuse(val_res, val_d, chosen), image_shape=image_shape, choice=name, weight=weight,
                  reference=np.asarray(train_x, np.float32), index=index, val_distances=val_d, settings=settings)


def _final(rule: ScoringRule, val_scores: np.ndarray, *, image_shape: Sequence[int] | None, choice: str,
           settings: RuleSettings, weight: float = 0.0, reference: np.ndarray | None = None,
           index: NearestNeighbors | None = None, val_distances: np.ndarray | None = None) -> FittedRule:
    share = settings.contamination
    if share is not None:  # contaminated validation rows: flag the expected share of anomalies among them
        share = estimate_contamination(val_scores) if share == "auto" else float(share)
        rule = replace(rule, threshold_percentile=100.0 * (1.0 - share), contamination=share)
    rule = replace(rule, threshold=choose_threshold(val_scores, rule.threshold_percentile))
    scorer = RuleScorer(rule, image_shape=image_shape, reference=reference,
                        index=index if reference is not None else None)
    return FittedRule(rule, scorer, val_scores, choice, weight, index, val_distances)


def validation_auroc(normal: np.ndarray, anomalies: np.ndarray) -> float:
    """AUROC of scores of normal validation rows vs validation anomalies (labelled or synthetic)."""
    y = np.r_[np.zeros(len(normal)), np.ones(len(anomalies))]
    return float(roc_auc_score(y, np.r_[normal, anomalies]))
