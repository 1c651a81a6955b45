"""`aeops monitor`: compare a batch file with a registered model's reference profile; write and log the verdict."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeops.errors import AeopsError, DataError
from aeops.io import atomic_path, write_json
from aeops.monitoring.drift import BatchStats, assess
from aeops.monitoring.report import markdown
from aeops.scoring.batch import check_paths, load_model, scored_chunks
from aeops.scoring.reference import ModelRef


def model_version(model_uri: str) -> tuple[str | None, str | None]:
    """(registered name, version) of a `models:/name/N` or `models:/name@alias` URI; (None, None) otherwise."""
    ref = ModelRef.parse(model_uri)
    if ref.alias is not None:
        import mlflow

        return ref.name, str(mlflow.MlflowClient().get_model_version_by_alias(ref.name, ref.alias).version)
    return ref.name, ref.version


def monitor_file(model_uri: str, input_path: str | Path, *, chunk_rows: int = 50_000, alpha: float = 0.01,
                 psi_threshold: float = 0.1, progress: bool = True) -> dict[str, Any]:
    """Stream the file through the model (constant memory but the scores) and assess it against the profile."""
    src = Path(input_path)
    check_paths(src, chunk_rows=chunk_rows)
    start = time.perf_counter()
    model, scorer = load_model(model_uri)
    if scorer is None or scorer.profile is None:
        raise DataError(f"{model_uri}: has no reference profile (registered before aeops wrote one); "
                        "run `dvc repro` to register a model that has one")
    batch = BatchStats(scorer.profile)
    scoring_started = time.perf_counter()
    for chunk, out in scored_chunks(model, src, chunk_rows=chunk_rows, label="monitor", progress=progress):
        _add(batch, scorer, chunk, out)
    if batch.rows == 0:
        raise DataError(f"{src}: no rows to check")
    result = assess(batch, alpha, psi_threshold)
    seconds = time.perf_counter() - start
    name, version = model_version(model_uri)
    result |= {
        "model": {"uri": model_uri, "name": name, "version": version},
        "data": str(src), "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3), "rows_per_second": round(batch.rows / max(time.perf_counter() - scoring_started, 1e-9), 1),
    }
    return result


def write_outputs(result: dict[str, Any], output_dir: str | Path) -> tuple[Path, Path]:
    """`<output_dir>/<time>_<model>-v<version>.json` and `.md`, each written atomically."""
    stamp = result["checked_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    model = result["model"]
    label = f"{model['name'] or 'model'}-v{model['version'] or 'na'}"
    stem = Path(output_dir) / f"{stamp}_{label}_{Path(result['data']).stem}"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    write_json(json_path, result)
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown(result))
    return json_path, md_path


def log_run(result: dict[str, Any], paths: tuple[Path, Path], mlflow_cfg: Any) -> str:
    """An MLflow run in `<experiment>-monitoring`, tagged with the model name and version; returns its id."""
    import mlflow

    from aeops.tracking import setup_experiment

    cfg = mlflow_cfg.model_copy(update={"experiment": f"{mlflow_cfg.experiment}-monitoring"})
    experiment_id = setup_experiment(cfg)
    model = result["model"]
    # verdict first: the runs table cuts long names
    name = f"{result['verdict']}: {Path(result['data']).name} → {model['name'] or model['uri']} v{model['version'] or '?'}"
    tags = {"model_name": str(model["name"]), "model_version": str(model["version"]), "model_uri": model["uri"],
            "verdict": result["verdict"], "data_file": result["data"], "drivers": ", ".join(result["drivers"]) or "none"}
    metrics = {
        "rows": result["rows"], "features_drifted": result["features_drifted"], "max_psi": result["max_psi"],
        "score_ks": result["score"]["ks"], "score_median_percentile": result["score"]["median_percentile"],
        "flagged_share": result["flagged"]["share"], "expected_flagged_share": result["flagged"]["expected"],
        "out_of_range_share": result["out_of_range_share"], "rows_per_second": result["rows_per_second"],
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_params(result["settings"])
        for path in paths:
            mlflow.log_artifact(str(path), "monitor")
    return run.info.run_id


def summary_line(result: dict[str, Any]) -> str:
    drivers = ", ".join(result["drivers"][:5]) + (" …" if len(result["drivers"]) > 5 else "")
    return (f"{result['verdict']}: {result['rows']} rows, {result['features_drifted']}/{result['features_checked']} "
            f"features drifted, flagged {result['flagged']['share']:.1%} (expected {result['flagged']['expected']:.1%}), "
            f"median score percentile {result['score']['median_percentile']:.0f}"
            + (f"; driven by {drivers}" if drivers else "") + _flagged_by(result))


def _flagged_by(result: dict[str, Any], n: int = 3) -> str:
    """'; flagged rows rest on a 41%, b 22%, …': the flagged rows' mean shares of their scores (table models)."""
    found = result["flagged"].get("features") or []
    return ("; flagged rows rest on " + ", ".join(f"{f['feature']} {f['mean_share']:.0%}" for f in found[:n])
            + (" …" if len(found) > n else "")) if found else ""


def frame_check(scorer: Any, df: pd.DataFrame, *, alpha: float = 0.01, psi_threshold: float = 0.1) -> dict[str, Any]:
    """Assess an in-memory table with a `Scorer` (benchmarks and tests: no MLflow, no files)."""
    if scorer.profile is None:
        raise AeopsError("the scorer's bundle has no reference profile")
    batch = BatchStats(scorer.profile)
    _add(batch, scorer, df, out=scorer.score(df))
    return assess(batch, alpha, psi_threshold)


def _add(batch: BatchStats, scorer: Any, frame: pd.DataFrame, out: pd.DataFrame) -> None:
    """One scored chunk into the batch: its raw features (bins, range) and its scores and flags. A table's
    features are its encoded columns: a level's share, a missing flag's rate, `<column>=(unseen)` for new levels."""
    x = scorer.matrix(frame)
    flags = out["is_anomaly"].to_numpy(bool)
    batch.add(x, out["anomaly_score"].to_numpy(), flags, scorer.outside(x))
    if flags.any() and not scorer.image:  # the flagged rows' explanations, every feature's share (as served)
        k = len(scorer.explained)
        why = scorer.score(frame[flags], explain=k)
        names = why[[f"explain_{i}_feature" for i in range(1, k + 1)]].to_numpy().ravel()
        shares = why[[f"explain_{i}_share" for i in range(1, k + 1)]].to_numpy(np.float64).ravel()
        batch.add_explained(pd.Series(shares).groupby(names).sum().to_dict())
