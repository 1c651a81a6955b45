"""MLflow set-up shared by the stages: tracking URI, experiment, run names, params, lineage tags."""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aeops.config import MlflowConfig
from aeops.errors import DataError, TrackingLost, TrackingUnavailable

# An unreachable server fails fast (the library default retries for minutes); users may override.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}

# MLflow caps a param value at 6,000 characters; ours are far shorter, but stay safe.
_MAX_PARAM = 6000
# MLflow 3's UI opens an experiment in its GenAI view unless told it holds model training.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
LOSS_HISTORY = ("train/loss", "val/loss", "train/recon_loss", "val/recon_loss")  # the per-epoch curves plotted
SCHEMA_ROWS = 1000  # rows of a pixel file read to describe it as an MLflow dataset
UI_QUERY = "?workflowType=machine_learning"  # MLflow 3.17's UI picks its view from this, not from the tag


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
        if exp.tags.get("mlflow.experimentKind") is None:
            client.set_experiment_tag(exp.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return exp.experiment_id
    location = None
    if not uri.startswith(("http://", "https://", "databricks")):
        location = (Path.cwd() / cfg.artifact_root / cfg.experiment).resolve().as_uri()
    try:
        return client.create_experiment(cfg.experiment, artifact_location=location, tags=EXPERIMENT_KIND)
    except MlflowException:  # created meanwhile by another process
        return client.get_experiment_by_name(cfg.experiment).experiment_id


RECOVER = "dvc repro -f --downstream train"  # retrains into the current store; evaluate and register follow


def require_run(run_id: str | None, cfg: MlflowConfig, *, source: str) -> None:
    """The tracking store must hold the run that a pipeline output (`source`) names.

    After `rm mlflow.db` (or a new MLFLOW_TRACKING_URI) DVC still calls the pipeline up to date, since
    the store is no DVC out: every later stage and command would fail on the missing run. One line
    says so and names the command that trains into the current store again.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    setup_experiment(cfg)
    try:
        mlflow.MlflowClient(tracking_uri(cfg)).get_run(str(run_id))
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":  # a server error or a refusal is not a lost store
            raise
        raise TrackingLost(f"{source} names MLflow run {run_id}, which the tracking store {mask_url(tracking_uri(cfg))} "
                           f"does not hold (mlflow.db deleted or MLFLOW_TRACKING_URI changed?): train into this "
                           f"store again with `{RECOVER}`") from None


def lost_run_hint(cfg: MlflowConfig, record: str | Path = "registry/registered.json") -> str | None:
    """The one-line recovery when the project's last registration names a run the store lacks, else None."""
    from aeops.io import read_json

    try:
        run_id = read_json(record)["run_id"]
        require_run(run_id, cfg, source=str(record))
    except TrackingLost as err:
        return str(err)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


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


def pipeline_outputs(dvc_file: str | Path = "dvc.yaml") -> list[str]:
    """Paths the DVC pipeline writes (outs, metrics, plots of every stage, relative to the repo), as git
    pathspecs, plus dvc.lock and .gitignore files. Paths outside the project are left out (git refuses them)."""
    import yaml

    specs = [":(exclude,glob)**/dvc.lock", ":(exclude,glob)**/.gitignore"]
    try:
        stages = (yaml.safe_load(Path(dvc_file).read_text()) or {}).get("stages", {})
    except (OSError, yaml.YAMLError):
        return specs
    root = Path(dvc_file).resolve().parent
    for stage in stages.values():
        wdir = root / str(stage.get("wdir", "."))
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                path = (wdir / (next(iter(entry)) if isinstance(entry, dict) else str(entry))).resolve()
                if path.is_relative_to(root):
                    specs.append(f":(exclude,literal){path.relative_to(root)}")
    return specs


def git_commit() -> str:
    """HEAD's commit hash (with `-dirty` if tracked files changed), or `unknown` outside git.

    Files the pipeline itself writes (dvc.lock, committed metrics, .gitignore entries) do not count:
    DVC rewrites them while `dvc repro` runs, so they would mark every run of a clean checkout dirty.
    If git cannot tell (an error), the commit counts as dirty: never claim a clean tree unchecked.
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *pipeline_outputs()],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if status.returncode != 0 or status.stdout.strip() else sha


def loss_curves(client: Any, run_id: str) -> dict[str, list[float]]:
    """The per-epoch loss curves of a run, one value per epoch (a resumed run's repeated epoch: the last)."""
    curves = {}
    for name in LOSS_HISTORY:
        by_step = {m.step: m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.timestamp)}
        curves[name] = [by_step[k] for k in sorted(by_step)]
    return curves


def effective_model(model: Mapping[str, Any]) -> dict[str, Any]:
    """`train.model` without the sections of the variants and the architecture not in use."""
    from aeops import variants

    unused = {name for name in variants.names() if name != model["variant"]}
    unused.add("conv" if model["architecture"] == "mlp" else "mlp")
    return {k: v for k, v in model.items() if k not in unused}


def data_label(prepare: Mapping[str, Any]) -> str:
    """Short name of the data a run used: `digits[0-8]`, `mnist[0]`, `breastw` (a table's file name)."""
    if prepare.get("source") == "table":
        return Path(str(prepare.get("path", "table"))).stem
    classes = prepare.get("normal_classes")
    if not classes:
        return str(prepare.get("source"))
    contiguous = len(classes) > 2 and list(classes) == list(range(classes[0], classes[-1] + 1))
    text = f"{classes[0]}-{classes[-1]}" if contiguous else ",".join(map(str, classes))
    return f"{prepare['source']}[{text}]"


def run_name(prepare: Mapping[str, Any], model: Mapping[str, Any], members: int = 1) -> str:
    """`digits[0-8] denoising-mlp z16 x3`: the data, the model and its size at a glance."""
    ensemble = f" x{members}" if members > 1 else ""
    return f"{data_label(prepare)} {model['variant']}-{model['architecture']} z{model['latent_dim']}{ensemble}"


def lineage_tags() -> dict[str, str]:
    """The git commit and, under `dvc exp run`, the DVC experiment's name (DVC sets DVC_EXP_NAME)."""
    return {"git_commit": git_commit(), "dvc_experiment": os.environ.get("DVC_EXP_NAME") or "none (dvc repro)"}


def log_dataset(data_dir: str | Path, prepare: Mapping[str, Any], data_hash: str, context: str = "training") -> None:
    """The prepared training split as the active run's MLflow dataset input (name, digest, source, schema, rows).

    A pixel file (image folders) is not read whole: its first rows give the schema, the profile counts all.
    """
    import mlflow
    import pandas as pd
    from mlflow.data.pandas_dataset import PandasDataset

    from aeops.data.prepared import PixelRows, load_meta, load_split

    class SampledDataset(PandasDataset):
        """A pandas dataset standing for a larger file: its profile counts the file's rows."""

        def __init__(self, sample: PandasDataset, rows: int):
            super().__init__(sample.df, source=sample.source, name=sample.name, digest=sample.digest)
            self.rows = rows

        @property
        def profile(self) -> dict[str, int]:
            return {"num_rows": self.rows, "num_elements": self.rows * self.df.shape[1]}

    meta = load_meta(data_dir)
    train = load_split(data_dir, "train", lazy=True)
    df = pd.DataFrame(train.x[:SCHEMA_ROWS] if isinstance(train.x, PixelRows) else train.x,
                      columns=[str(c) for c in meta.feature_names])
    own_data = prepare.get("source") in ("table", "image_folder")
    source = str(prepare.get("path")) if own_data else f"aeops builtin: {prepare.get('source')}"
    with warnings.catch_warnings():  # MLflow guesses among source types ("interpreted in multiple ways"): moot here
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(df, source=source, name=data_label(prepare), digest=data_hash[:12])
    if len(df) < len(train):
        dataset = SampledDataset(dataset, len(train))
    mlflow.log_input(dataset, context=context)


def require_model(model_uri: str, *, tracking_uri: str, mlflow_cfg: MlflowConfig, registered_file: str) -> None:
    """A missing alias or version gets one line naming the fix, not MLflow's traceback (the recovery
    command when the store lost the runs the pipeline's outputs name)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from aeops.scoring.reference import PRODUCTION, ModelRef

    ref = ModelRef.parse(model_uri)
    if not ref.registered:
        return  # not a registry URI with a version or alias: MLflow says what is wrong
    client = mlflow.MlflowClient(tracking_uri)
    try:
        if ref.alias is None:
            client.get_model_version(ref.name, ref.version)
        else:
            client.get_model_version_by_alias(ref.name, ref.alias)
    except MlflowException:
        lost = lost_run_hint(mlflow_cfg, registered_file)
        if lost:
            raise DataError(f"{model_uri} not found: {lost}") from None
        hint = "run `make promote` first" if ref.alias == PRODUCTION else "run `make repro` (stage register) first"
        raise DataError(f"{model_uri} not found in the registry at {mask_url(tracking_uri)}: {hint}") from None
