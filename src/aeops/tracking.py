"""MLflow set-up shared by the stages: tracking URI, experiment, flattened params, provenance tags."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aeops.config import MlflowConfig
from aeops.errors import TrackingUnavailable

# An unreachable server fails fast (the library default retries for minutes); users may override.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}

# MLflow caps a param value at 6,000 characters; ours are far shorter, but stay safe.
_MAX_PARAM = 6000


def tracking_uri(cfg: MlflowConfig) -> str:
    """`MLFLOW_TRACKING_URI` wins, then params, then `sqlite:///<cwd>/mlflow.db` (embedded default)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    return uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def setup_experiment(cfg: MlflowConfig) -> str:
    """Point MLflow at the tracking URI and return the experiment id, creating it if needed.

    A new experiment gets an explicit artifact location (`<cfg.artifact_root>/<experiment>` under
    the cwd for local stores), so artifacts never land in a surprise `mlruns/` folder.
    """
    for var, value in HTTP_DEFAULTS.items():  # fail in seconds, not minutes of retries
        os.environ.setdefault(var, value)
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    try:
        exp = client.get_experiment_by_name(cfg.experiment)
    except (MlflowException, OSError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise TrackingUnavailable(f"MLflow tracking server {mask_url(uri)} is unreachable ({first})") from None
    if exp is not None:
        return exp.experiment_id
    location = None
    if not uri.startswith(("http://", "https://", "databricks")):
        location = (Path.cwd() / cfg.artifact_root / cfg.experiment).resolve().as_uri()
    try:
        return client.create_experiment(cfg.experiment, artifact_location=location)
    except MlflowException:  # created meanwhile by another process
        return client.get_experiment_by_name(cfg.experiment).experiment_id


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{'a': {'b': 1}} → {'a.b': '1'}; lists become their string form."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:_MAX_PARAM]
    return flat


def mask_url(url: str) -> str:
    """Hide the password of a URL such as postgresql://user:secret@host/db (never log credentials)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def git_commit() -> str:
    """HEAD's commit hash (with `-dirty` if the tree has changes), or `unknown` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha
