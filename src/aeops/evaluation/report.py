"""A per-run HTML report that works offline: every image inlined, no script or style from a CDN.

A Content-Security-Policy forbids any network fetch, so what renders here renders on a laptop with
no network. One small inline script counts the images that decoded (`data-images` on <body>), so a
headless browser can check the page as users see it.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeops import figures
from aeops.data.prepared import Split
from aeops.io import atomic_path

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;padding:0 1em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.meta td{text-align:left}.warn{color:#a33}.figs img{max-width:49%}"""
COUNT_IMAGES = ("<script>addEventListener('load',()=>{const i=[...document.images];"
                "document.body.dataset.images=i.filter(e=>e.complete&&e.naturalWidth>0).length+'/'+i.length})</script>")
WORST_ROWS = 10


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(df: pd.DataFrame) -> str:
    df = df.map(lambda v: np.nan if v is None else v)  # a measure a method lacks shows as "—", not "None"
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, na_rep="—")


def _by_metric(table: pd.DataFrame) -> pd.DataFrame:
    """Methods as columns, measures as rows: four methods fit a page, a dozen measures do not."""
    wide = table.set_index("method").T
    wide.columns.name = None
    return wide.rename_axis("measure").reset_index()


def worst_rows(test: Split, scores: np.ndarray, *, threshold: float | None,
               why: Callable[[np.ndarray], np.ndarray] | None = None, feature_names: list[str] | None = None,
               n: int = WORST_ROWS) -> pd.DataFrame:
    """The n highest-scored test rows: index, score, flagged or not, the truth where known, and the three
    features with the largest share of the score (`why`: row indices → the scoring rule's feature shares,
    as served with `explain`; a categorical column is one feature) — where to look in the row."""
    order = np.argsort(-np.asarray(scores))[:n]
    df = pd.DataFrame({"test row": order, "anomaly score": np.asarray(scores)[order]})
    if why is not None and feature_names is not None:
        shares = why(order)
        df["top features (share of the score)"] = [
            ", ".join(f"{feature_names[j]} {r[j]:.0%}" for j in np.argsort(-r, kind="stable")[:3]) for r in shares]
    if threshold is not None:
        df["flagged"] = np.where(df["anomaly score"] > threshold, "yes", "no")
    if test.is_anomaly is not None:
        df["truly anomalous"] = np.where(test.is_anomaly[order] == 1, "yes", "no")
    if test.labels is not None:
        df["label"] = test.labels[order]
    return df


def build_report(
    path: str | Path, *, title: dict[str, str], table: pd.DataFrame, plots_dir: str | Path, test: Split,
    recon: np.ndarray, codes: np.ndarray, scores: np.ndarray, threshold: float | None,
    image_shape: tuple[int, ...] | None, history: dict[str, list[float]], warnings: list[str], seed: int = 0,
    feature_names: list[str] | None = None, why: Callable[[np.ndarray], np.ndarray] | None = None,
    roles: dict[str, dict] | None = None, maps: Callable[[np.ndarray], np.ndarray] | None = None,
    pixel_threshold: float | None = None, localisation: dict[str, Any] | None = None,
) -> Path:
    """Write the report atomically. `title` holds the run's name, ids and lineage, shown as a table.
    `feature_names` and `why`: the scored features and their shares per test row (see `worst_rows`).
    `roles`: a table's column roles (prepare's, with the reasons), shown as a section. `maps`: an image model's
    (n, h, w) anomaly maps of test rows, shown for the highest-scored ones with the masks `pixel_threshold` draws
    (and the true masks where the test split has them, with evaluate's `localisation` numbers)."""
    order = np.argsort(-np.asarray(scores))
    errors = ((recon.reshape(len(recon), -1) - test.x.reshape(len(test.x), -1)) ** 2).mean(1)
    plots_dir = Path(plots_dir)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        worst = order[:8]
        typical = order[len(order) // 2 : len(order) // 2 + 8]
        figs = {
            "recon_worst": figures.plot_reconstructions(
                t / "rw.png", test.x[worst], recon=recon[worst], image_shape=image_shape, errors=errors[worst]
            ),
            "recon_typical": figures.plot_reconstructions(
                t / "rt.png", test.x[typical], recon=recon[typical], image_shape=image_shape, errors=errors[typical]
            ),
            "latent": figures.plot_latent_2d(
                t / "latent.png", codes, labels=test.labels, seed=seed, is_anomaly=test.is_anomaly
            ),
            "loss": figures.plot_loss_curves(t / "loss.png", history),
        }
        sections = [
            ("Model vs baselines (test split)", _table(_by_metric(table))),
            (
                "ROC and precision-recall",
                "<div class=figs>"
                + "".join(_img(plots_dir / f, f) for f in ("roc.png", "pr.png") if (plots_dir / f).exists())
                + "</div>"
                if (plots_dir / "roc.png").exists()
                else "<p>No labelled anomalies in the test split.</p>",
            ),
            ("Anomaly scores with the threshold", _img(plots_dir / "score_histograms.png", "score histograms")),
            (
                "Highest-scored test rows",
                _table(worst_rows(test, scores, threshold=threshold, why=why, feature_names=feature_names)),
            ),
            ("Reconstructions of the 8 highest-scored test rows (MSE per row)", _img(figs["recon_worst"], "worst")),
            ("Reconstructions of 8 typical test rows (median scores)", _img(figs["recon_typical"], "typical")),
            ("Latent space, anomalies ringed", _img(figs["latent"], "latent map")),
            ("Loss curves", _img(figs["loss"], "loss curves")),
        ]
        if maps is not None and image_shape is not None and pixel_threshold is not None:
            truth = None if test.masks is None else np.asarray(test.masks)[worst]
            figs["maps"] = figures.plot_heatmaps(t / "maps.png", test.x[worst], maps(worst), image_shape=image_shape,
                                                 threshold=pixel_threshold, masks=truth, scores=np.asarray(scores)[worst])
            where = sections.index(next(s for s in sections if s[0].startswith("Reconstructions of the 8")))
            sections.insert(where + 1, (f"Anomaly maps of the 8 highest-scored test images (mask: the map above the "
                                        f"pixel threshold {pixel_threshold:.3g})", _img(figs["maps"], "anomaly maps")))
        if localisation:
            numbers = pd.DataFrame([{"method": "aeops" if m == "model" else m, **v}
                                    for m, v in localisation.items() if isinstance(v, dict)])
            sections.insert(1, (f"Localisation on {localisation['defect_images']} test images with masks "
                                f"({localisation['regions']} defect regions)", _table(numbers)))
        if roles:
            columns = pd.DataFrame([{"column": k, "role": v["role"], "why": v["why"]} for k, v in roles.items()])
            sections.insert(1, ("Columns (prepare's roles: those not numeric, categorical or datetime are left out)",
                                _table(columns)))
        meta = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in title.items())
        body = [f"<h1>aeops run report: {html.escape(title.get('run', ''))}</h1>", f"<table class=meta>{meta}</table>"]
        body += [f"<p class=warn>warning: {html.escape(w)}</p>" for w in warnings]
        body += [f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections]
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        page = (
            f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>aeops report: {html.escape(title.get('run', ''))}</title><style>{STYLE}</style>{COUNT_IMAGES}"
            f"</head><body>{''.join(body)}<p><small>written {stamp}</small></p></body></html>"
        )
    with atomic_path(Path(path)) as out:
        out.write_text(page, encoding="utf-8")
    return Path(path)


def report_title(run: Any, bundle_run_id: str) -> dict[str, Any]:
    """The header of a report: run name, data, model, lineage (from the MLflow run)."""
    tags = run.data.tags if run is not None else {}
    return {
        "run": tags.get("mlflow.runName", bundle_run_id),
        "run id": bundle_run_id,
        "data": tags.get("data", "?"),
        "data hash": tags.get("data_hash", "?")[:12],
        "git commit": tags.get("git_commit", "?"),
        "DVC experiment": tags.get("dvc_experiment", "?"),
    }
