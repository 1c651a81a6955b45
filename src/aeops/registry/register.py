"""Stage `register`: log the model bundle as a scoring pyfunc in its training run, register it, alias `challenger`."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import aeops
from aeops.config import MlflowConfig, RegisterConfig
from aeops.data.raw import raw_split, write_sample  # noqa: F401 (re-exported)
from aeops.errors import AeopsError, DataError
from aeops.evaluation.results import headline_metrics, methods
from aeops.io import hash_dir, read_json, write_json
from aeops.scoring.bundle import ModelBundle
from aeops.scoring.reference import registered
from aeops.scoring.scorer import Scorer
from aeops.tracking import require_run

CHALLENGER, PRODUCTION, PREVIOUS = "challenger", "production", "previous"


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


def log_scoring_model(bundle_dir: str, data_dir: str) -> Any:
    """Log the pyfunc (the model bundle as its one artifact) into the bundle's training run; return its ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    from aeops.serving import pyfunc

    bundle = ModelBundle.load(bundle_dir)
    example = raw_split(data_dir, head=5)[0]
    with warnings.catch_warnings():  # the integer column is an output (out_of_range counts), never missing
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(example, Scorer(bundle).score(example), params={"output": "scores", "explain": 0})
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


MODEL_DESCRIPTION = (
    "Autoencoder anomaly scorer trained by the aeops pipeline (`make repro`). Input: the raw feature columns "
    "of the data it was trained on; output per row: `anomaly_score` (reconstruction error; for tables "
    "fused with the kNN distance to the training rows where evaluate chose so: each version says which) and `is_anomaly` "
    "(score above the threshold set on normal validation rows). Alias `challenger`: the newest version; "
    "`production`: the one served (`make promote` moves it only if not worse on the same test split)."
)
BASELINE_NAMES = {"knn_distance": "kNN distance", "isolation_forest": "IsolationForest", "pca": "PCA"}


def version_tags(bundle: ModelBundle, run_tags: dict[str, str]) -> dict[str, str]:
    """What users filter versions on: data, model and lineage (numbers live on the logged model)."""
    keep = ("data", "variant", "architecture", "dvc_experiment")
    return {"git_commit": str(bundle.git_commit), "data_hash": bundle.data_hash, "run_id": str(bundle.run_id),
            "latent_dim": str(bundle.latent_dim), **{k: run_tags[k] for k in keep if k in run_tags}}


def version_description(results: dict, run_tags: dict[str, str], run_id: str) -> str:
    """Markdown: data, model, headline numbers vs the baselines on the same test split, and provenance."""
    model = results["model"]
    lines = [f"{run_tags.get('mlflow.runName', 'aeops model')}: data `{run_tags.get('data', '?')}` "
             f"(hash {str(run_tags.get('data_hash', '?'))[:12]}), variant {run_tags.get('variant', '?')}, "
             f"{run_tags.get('architecture', '?')}, code size {model.get('latent_dim')}, ensemble of {model.get('ensemble', 1)}."]
    if model.get("auroc") is not None:
        others = ", ".join(f"{BASELINE_NAMES.get(m, m)} {v['auroc']:.3f}" for m, v in methods(results).items()
                           if m != "model" and v.get("auroc") is not None)
        lines.append(f"Test AUROC **{model['auroc']:.3f}** (baselines on the same split: {others}); "
                     f"AUPRC {model['auprc']:.3f}; F1 at the threshold {model['f1']:.3f}.")
    where = ("percentile of normal validation scores" if model.get("contamination") is None else
             f"no labels: flags {model['contamination']:.1%} of validation rows, evaluate.contamination")
    lines.append(f"Reconstruction MSE {model['recon_mse']:.4g}; threshold {model['threshold']:.4g} ({where}).")
    if model.get("score_choice"):
        lines.append(f"Score: {model['score_choice']}.")
    lines.append(f"Registered by the `register` stage from run {run_id} at commit "
                 f"{str(run_tags.get('git_commit', '?'))[:12]}, alias `challenger`; promotion appends below.")
    return "\n\n".join(lines)


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
    require_run(bundle.run_id, mlflow_cfg, source=cfg.bundle_dir)
    client = mlflow.MlflowClient()
    run_tags = client.get_run(bundle.run_id).data.tags
    model_info = log_scoring_model(cfg.bundle_dir, cfg.data_dir)
    # MLflow 3: the numbers belong to the logged model itself (its page and the version page show them)
    mlflow.log_metrics(headline_metrics(results), run_id=bundle.run_id, model_id=model_info.model_id)
    version = mlflow.register_model(model_info.model_uri, cfg.model_name, tags=version_tags(bundle, run_tags))
    if not client.get_registered_model(cfg.model_name).description:
        client.update_registered_model(cfg.model_name, MODEL_DESCRIPTION)
    client.update_model_version(cfg.model_name, version.version,
                                version_description(results, run_tags, str(bundle.run_id)))
    client.set_registered_model_alias(cfg.model_name, CHALLENGER, version.version)
    record = {
        "name": cfg.model_name, "version": int(version.version), "alias": CHALLENGER,
        "run_id": bundle.run_id, "model_uri": registered(cfg.model_name, version=version.version),
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
