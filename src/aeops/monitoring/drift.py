"""Does a batch still look like the training data? Per-feature drift, score shift and flagged share.

Three checks share the false-alarm budget `alpha` equally (a family-wise bound on a clean batch):
- features: per feature, a chi-square test of homogeneity (scipy) of the batch's counts against the
  training counts in the profile's bins, Bonferroni-corrected over the features; a feature counts as
  drifted only if its PSI also reaches `psi_threshold` (0.1: the usual "moderate shift"), so a large
  batch does not alarm on a negligible change;
- scores: a two-sample Kolmogorov–Smirnov test (scipy) of the batch's anomaly scores against the
  normal validation scores; only an upward shift counts (scores rising means worse reconstructions);
- flagged share: a one-sided Fisher exact test of the batch's share above the threshold against the
  normal validation rows' share (the threshold was set on them, so its own uncertainty counts).
Binned counts rather than raw training rows: the profile carries no training data, the test is
valid for discrete and mostly-constant features (where KS p-values are not), and PSI uses the same bins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from aeops.scoring.profile import Profile

PSI_FLOOR = 0.5  # pseudo-count per bin, so an empty bin has a finite PSI


@dataclass
class BatchStats:
    """What a (possibly chunked) batch adds up to: bin counts per feature, scores, flags."""

    profile: Profile
    rows: int = 0
    flagged: int = 0
    out_of_range_rows: int = 0
    counts: list[np.ndarray] = field(default_factory=list)
    out_of_range: np.ndarray | None = None  # per feature: rows outside the training range
    scores: list[np.ndarray] = field(default_factory=list)
    flagged_shares: dict[str, float] = field(default_factory=dict)  # table models: summed shares over flagged rows

    def add_explained(self, shares: dict[str, float]) -> None:
        """Flagged rows' per-feature shares of their scores (`explain`), summed, to say what the flags rest on."""
        for name, value in shares.items():
            self.flagged_shares[name] = self.flagged_shares.get(name, 0.0) + value

    def add(self, x_raw: np.ndarray, scores: np.ndarray, is_anomaly: np.ndarray, outside: np.ndarray) -> None:
        """One chunk: raw feature rows, their scores and flags, and the (rows, features) out-of-range mask."""
        counts = self.profile.bin_counts(x_raw)
        self.counts = counts if not self.counts else [a + b for a, b in zip(self.counts, counts)]
        per_feature = outside.sum(axis=0)
        self.out_of_range = per_feature if self.out_of_range is None else self.out_of_range + per_feature
        self.scores.append(np.asarray(scores, np.float64))
        self.rows += len(x_raw)
        self.flagged += int(np.sum(is_anomaly))
        self.out_of_range_rows += int(outside.any(axis=1).sum())


def psi(reference: np.ndarray, observed: np.ndarray) -> float:
    """Population stability index between a reference share vector and observed counts (same bins)."""
    ref = np.asarray(reference, np.float64)
    obs = (np.asarray(observed, np.float64) + PSI_FLOOR) / (np.sum(observed) + PSI_FLOOR * len(observed))
    ref = np.maximum(ref, PSI_FLOOR / 1e6)
    return float(np.sum((obs - ref) * np.log(obs / ref)))


def homogeneity(reference: np.ndarray, n_reference: int, observed: np.ndarray) -> tuple[float, int]:
    """Chi-square statistic of homogeneity of the reference (shares × rows) and observed counts, and its dof.

    The same statistic as `scipy.stats.chi2_contingency(table, correction=False)` (a test checks it),
    written out because scipy's per-table call costs ~1 ms, too slow for 784 pixels per batch.
    """
    ref = np.asarray(reference, np.float64) * n_reference
    obs = np.asarray(observed, np.float64)
    cols = ref + obs
    keep = cols > 0
    if keep.sum() < 2:
        return 0.0, 0
    ref, obs, cols = ref[keep], obs[keep], cols[keep]
    total = cols.sum()
    exp_ref, exp_obs = ref.sum() * cols / total, obs.sum() * cols / total
    stat = np.sum((ref - exp_ref) ** 2 / exp_ref) + np.sum((obs - exp_obs) ** 2 / exp_obs)
    return float(stat), int(keep.sum() - 1)


def assess(batch: BatchStats, alpha: float = 0.01, psi_threshold: float = 0.1, top: int = 10) -> dict[str, Any]:
    """The drift report of a batch: per-feature drift, score shift, flagged share and a verdict."""
    prof, n = batch.profile, batch.rows
    if n == 0:
        raise ValueError("an empty batch has no distribution to compare")
    a = alpha / 3  # one third of the budget per check
    a_feature = a / len(prof.features)
    features = []
    tests = [homogeneity(np.asarray(prof.shares[j]), prof.train_rows, batch.counts[j]) for j in range(len(prof.features))]
    chi2s, dofs = (np.array(v, np.float64) for v in zip(*tests))
    pvalues = np.where(dofs > 0, stats.chi2.sf(chi2s, np.maximum(dofs, 1)), 1.0)
    for j, name in enumerate(prof.features):
        chi2, p = float(chi2s[j]), float(pvalues[j])
        value = psi(np.asarray(prof.shares[j]), batch.counts[j])
        features.append({
            "feature": name, "psi": value, "chi2": chi2, "p_value": p,
            "drifted": bool(p < a_feature and value >= psi_threshold),
            "out_of_range_share": float(batch.out_of_range[j] / n),
        })
    features.sort(key=lambda f: (not f["drifted"], -f["psi"]))
    drifted = [f["feature"] for f in features if f["drifted"]]

    scores = np.concatenate(batch.scores)
    ref = np.asarray(prof.val_scores, np.float64)
    ks = stats.ks_2samp(scores, ref, alternative="less", method="asymp")  # "less": the batch's CDF lies below, i.e. higher scores
    score = {
        "ks": float(ks.statistic), "p_value": float(ks.pvalue), "shifted": bool(ks.pvalue < a),
        "median": float(np.median(scores)), "reference_median": float(np.median(ref)),
        "median_percentile": float(np.median(prof.score_percentile(scores))),
    }
    share = batch.flagged / n
    # against the validation rows' own count, not a fixed rate: the threshold is itself an estimate
    n_ref = len(ref)
    ref_flagged = int(np.sum(ref > prof.threshold))
    fisher = stats.fisher_exact([[batch.flagged, n - batch.flagged], [ref_flagged, n_ref - ref_flagged]],
                                alternative="greater")
    flagged = {"share": share, "expected": prof.expected_flagged, "p_value": float(fisher.pvalue),
               "excess": bool(fisher.pvalue < a)}

    if batch.flagged and batch.flagged_shares:  # what the flagged rows' scores rest on, as `explain` splits them
        ranked = sorted(batch.flagged_shares.items(), key=lambda kv: -kv[1])[:top]
        flagged["features"] = [{"feature": k, "mean_share": v / batch.flagged} for k, v in ranked]
    drivers = drifted[:top] + (["anomaly_score"] if score["shifted"] else []) + (["flagged_share"] if flagged["excess"] else [])
    return {
        "verdict": "drift" if drivers else "ok",
        "drivers": drivers,
        "rows": n,
        "features_drifted": len(drifted),
        "features_checked": len(features),
        "max_psi": max(f["psi"] for f in features),
        "out_of_range_share": batch.out_of_range_rows / n,
        "score": score,
        "flagged": flagged,
        "features": features,
        "settings": {"alpha": alpha, "psi_threshold": psi_threshold, "test": "chi-square on training deciles"},
    }
