"""A monitoring result as a self-contained Markdown report (readable in a terminal, on GitHub, in MLflow)."""

from __future__ import annotations

from typing import Any

TOP_FEATURES = 15


def markdown(result: dict[str, Any]) -> str:
    model, score, flagged = result["model"], result["score"], result["flagged"]
    s = result["settings"]
    lines = [
        f"# Monitoring: {result['verdict'].upper()}",
        "",
        f"- data: `{result['data']}`, {result['rows']} rows, checked {result['checked_at']}",
        f"- model: `{model['uri']}` (name {model['name']}, version {model['version']})",
        f"- drivers: {', '.join(result['drivers']) or 'none'}",
        f"- false-alarm budget α = {s['alpha']} for a clean batch, split over features (Bonferroni), "
        f"score shift and flagged share; a feature drifts if its {s['test']} rejects and PSI ≥ {s['psi_threshold']}",
        "",
        "## Scores",
        "",
        "| measure | batch | reference | p-value | alarm |",
        "|---|---|---|---|---|",
        f"| flagged share | {flagged['share']:.2%} | {flagged['expected']:.2%} expected | {flagged['p_value']:.3g} | "
        f"{'yes' if flagged['excess'] else 'no'} |",
        f"| median anomaly score | {score['median']:.4g} | {score['reference_median']:.4g} (normal validation) | "
        f"{score['p_value']:.3g} (KS {score['ks']:.3f}) | {'yes' if score['shifted'] else 'no'} |",
        f"| median score percentile | {score['median_percentile']:.1f} | 50 | | |",
        f"| rows with a feature out of range | {result['out_of_range_share']:.2%} | | | |",
        "",
        f"## Features ({result['features_drifted']} of {result['features_checked']} drifted; "
        f"top {min(TOP_FEATURES, result['features_checked'])} by drift, then PSI)",
        "",
        "| feature | PSI | chi-square | p-value | out of range | drifted |",
        "|---|---|---|---|---|---|",
    ]
    for f in result["features"][:TOP_FEATURES]:
        lines.append(f"| {f['feature']} | {f['psi']:.3f} | {f['chi2']:.1f} | {f['p_value']:.3g} | "
                     f"{f['out_of_range_share']:.1%} | {'yes' if f['drifted'] else 'no'} |")
    why = flagged.get("features")
    if why:  # drift says what moved; this says what the flagged rows' scores rest on (the same split as explain)
        lines += ["", "## What the flagged rows' scores rest on", "",
                  "Each feature's mean share of a flagged row's score (as `explain` splits it).", "",
                  "| feature | mean share |", "|---|---|"]
        lines += [f"| {f['feature']} | {f['mean_share']:.1%} |" for f in why]
    return "\n".join(lines) + "\n"
