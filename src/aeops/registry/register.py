"""Stage `register`: log the model bundle as a scoring pyfunc in its training run, register it, alias `challenger`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import aeops
from aeops.bundle import ModelBundle
from aeops.config import MlflowConfig, RegisterConfig
from aeops.data.prepared import invert_scaler, load_scaler, load_split
from aeops.errors import AeopsError, DataError
from aeops.evaluation.evaluate import methods
from aeops.io import atomic_path, hash_dir, read_json, write_json
from aeops.serving.scorer import Scorer
from aeops.tracking import setup_experiment

CHALLENGER, PRODUCTION, PREVIOUS = "challenger", "production", "previous"
_TAG_LIMIT = 5000


def raw_split(data_dir: str, name: str = "test") -> tuple[pd.DataFrame, Any]:
    """A prepared split back in raw units, as the columns a user sends (and its labels)."""
    split, scaler = load_split(data_dir, name), load_scaler(data_dir)
    df = pd.DataFrame(invert_scaler(scaler, split.x), columns=scaler["feature_names"])
    return df, split


def pip_requirements() -> list[str]:
    import mlflow
    import pydantic
    import scipy
    import yaml

    return [
        f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
        f"pandas=={pd.__version__}", f"numpy=={np.__version__}", f"pydantic=={pydantic.__version__}",
        f"PyYAML=={yaml.__version__}", f"scipy=={scipy.__version__}",
    ]


def write_sample(data_dir: str, output: str, split: str = "test", rows: int = 500) -> int:
    """Write the first `rows` rows of a prepared split in raw units (the model's input), atomically.

    `.csv`/`.parquet`: a table for `aeops score`; `.json`: a REST request body (`dataframe_split`).
    """
    if rows < 1:
        raise DataError(f"--rows must be at least 1, got {rows}")
    df = raw_split(data_dir, split)[0].head(rows)
    suffix = Path(output).suffix.lower()
    with atomic_path(output) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix in (".parquet", ".pq"):
            df.to_parquet(tmp, index=False)
        elif suffix == ".json":
            tmp.write_text(json.dumps({"dataframe_split": df.to_dict(orient="split", index=False)}))
        else:
            raise DataError(f"{output}: name the file *.csv, *.parquet or *.json (a REST request body)")
    return len(df)


def log_scoring_model(bundle_dir: str, data_dir: str) -> Any:
    """Log the pyfunc (the model bundle as its one artifact) into the bundle's training run; return its ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    from aeops.serving import pyfunc

    bundle = ModelBundle.load(bundle_dir)
    example = raw_split(data_dir)[0].head(5)
    signature = infer_signature(example, Scorer(bundle).score(example), params={"output": "scores"})
    with mlflow.start_run(run_id=bundle.run_id):
        return mlflow.pyfunc.log_model(
            name="scorer",
            python_model=pyfunc.__file__,
            artifacts={"bundle": str(Path(bundle_dir).resolve())},
            code_paths=[str(Path(aeops.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
        )


def version_tags(bundle: ModelBundle, results: dict, train_params: dict) -> dict[str, str]:
    tags = {"git_commit": str(bundle.git_commit), "data_hash": bundle.data_hash, "run_id": str(bundle.run_id),
            "params": _json_within(train_params, _TAG_LIMIT)}
    for method, values in methods(results).items():
        prefix = "test" if method == "model" else f"baseline.{method}"
        tags |= {f"{prefix}.{k}": str(v) for k, v in values.items() if v is not None}
    return tags


def _json_within(data: dict[str, str], limit: int) -> str:
    """JSON of `data`, dropping trailing keys (never cutting the text) until it fits in `limit`."""
    keys = sorted(data)
    while keys and len(text := json.dumps({k: data[k] for k in keys}, sort_keys=True)) > limit:
        keys.pop()
    return text if keys else "{}"


def register(cfg: RegisterConfig, mlflow_cfg: MlflowConfig) -> dict[str, Any]:
    """Register the trained model as a new version of `cfg.model_name` with alias `challenger`."""
    import mlflow

    metrics_path = Path(cfg.metrics_file)
    if not metrics_path.exists():
        raise DataError(f"{metrics_path}: not found; run `dvc repro evaluate` first")
    bundle, results = ModelBundle.load(cfg.bundle_dir), read_json(metrics_path)
    _same_model_and_data(bundle, results, cfg)
    model_metrics = results["model"]
    bad = [k for k in ("recon_mse", "threshold") if not _finite(model_metrics.get(k))]
    if bad:
        raise AeopsError(f"register: refusing a model whose test {', '.join(bad)} is not a finite number")
    setup_experiment(mlflow_cfg)
    client = mlflow.MlflowClient()
    train_params = {k: v for k, v in client.get_run(bundle.run_id).data.params.items() if k.startswith("train.")}
    model_info = log_scoring_model(cfg.bundle_dir, cfg.data_dir)
    version = mlflow.register_model(
        model_info.model_uri, cfg.model_name, tags=version_tags(bundle, results, train_params)
    )
    client.set_registered_model_alias(cfg.model_name, CHALLENGER, version.version)
    record = {
        "name": cfg.model_name, "version": int(version.version), "alias": CHALLENGER,
        "run_id": bundle.run_id, "model_uri": f"models:/{cfg.model_name}/{version.version}",
        "metrics": model_metrics,
    }
    write_json(cfg.output_file, record)
    return record


def _same_model_and_data(bundle: ModelBundle, results: dict, cfg: RegisterConfig) -> None:
    """The bundle, its evaluation and the prepared data must belong together."""
    if bundle.scoring is None:
        raise DataError(f"{cfg.bundle_dir}: has no scoring rule; run `dvc repro evaluate` first")
    if results["model"].get("threshold") != bundle.scoring.threshold:  # both are written by one evaluate
        raise DataError(f"{cfg.metrics_file}: evaluates another model than {cfg.bundle_dir}; "
                        "run `dvc repro evaluate` first")
    if bundle.data_hash != hash_dir(cfg.data_dir):
        raise DataError(f"{cfg.bundle_dir} was made on other data than {cfg.data_dir}; run `dvc repro` first")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
