"""Typed params: one pydantic model per `params.yaml` section, validated at the start of each stage."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from aeops import variants
from aeops.errors import ConfigError

# `train.model`'s schema belongs to the models (aeops.models.config); re-exported here for the other sections
from aeops.models.config import (  # noqa: E402, F401
    VARIANTS,
    Activation,
    ConvConfig,
    MLPConfig,
    ModelConfig,
    Variant,
)
from aeops.params_base import (  # noqa: F401  (FloatRange, IntRange, Choices: re-exported for aeops.tuning)
    Choices,
    FloatKnob,
    FloatRange,
    IntKnob,
    IntRange,
    Strict,
    choices,
    float_range,
    int_range,
)


# ---------------------------------------------------------------- prepare
class PrepareConfig(Strict):
    source: Literal["digits", "mnist", "fashion_mnist", "table", "image_folder"] = "digits"
    path: str = "data/raw"
    feature_columns: list[str] | None = None
    label_column: str | None = None
    anomaly_column: str | None = None
    # digits 0-8 (9 is the anomaly); class names (image folders, string table labels) or their integer codes
    normal_classes: list[int | str] | None = Field(default_factory=lambda: list(range(9)))
    normal_dir: str | None = None  # image_folder, anomalib style: normal images in path/<normal_dir>
    abnormal_dir: str | None = None  # and anomalies in path/<abnormal_dir>
    normal_test_dir: str | None = None  # and normal images for the test split only (else test is cut from normal_dir)
    mask_dir: str | None = None  # a defect mask per abnormal image, same name (evaluation only: pixel AUROC, AUPRO)
    image_size: list[int] | None = Field(None, min_length=2, max_length=2)  # [height, width]; null = as stored
    image_mode: Literal["auto", "grayscale", "rgb"] = "auto"
    image_fit: Literal["resize", "center_crop"] = "resize"
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    max_train_rows: int | None = Field(None, gt=0)
    max_eval_rows: int | None = Field(None, gt=0)  # cap val, test and the held-out anomalies the same way
    # tables: at most this many rows are held in memory; a larger table (or Parquet folder) is streamed: its test rows
    # are test_fraction of all rows (at most max_rows), train and val a seeded sample of about max_rows of the others
    max_rows: int | None = Field(1_000_000, ge=100)
    scaling: Literal["auto", "standard", "robust", "minmax", "global_minmax", "none"] = "auto"
    # tables: column roles are inferred (numeric, categorical, datetime, identifier, text, constant); these override
    categorical_columns: list[str] | None = None  # treat these as categorical (numbers too)
    drop_columns: list[str] | None = None  # leave these out
    datetime: Literal["exclude", "cyclic"] = "exclude"  # a timestamp column: left out, or hour and weekday as sin/cos
    min_frequency: float = Field(0.01, gt=0, lt=1)  # categorical levels rarer than this share of the rows share a slot
    max_levels: int = Field(100, ge=2)  # at most this many levels a categorical column (after grouping rare ones)
    seed: int = 42
    output_dir: str = "data/prepared"

    @model_validator(mode="after")
    def _protocol(self) -> PrepareConfig:
        if self.normal_classes is not None and self.anomaly_column is not None:
            raise ValueError(
                f"anomaly_column = {self.anomaly_column!r} and normal_classes = {self.normal_classes} both set an "
                "anomaly protocol; set one to null (-S prepare.normal_classes=null to use the column, "
                "-S prepare.anomaly_column=null to use the classes)"
            )
        if self.normal_classes is not None and len(self.normal_classes) == 0:
            raise ValueError("normal_classes must list at least one class (or be null)")
        if self.source != "table":
            for key in ("feature_columns", "label_column", "anomaly_column", "categorical_columns", "drop_columns"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} applies only to source 'table' (source is '{self.source}'); set it to null")
        if self.source != "image_folder":
            folder_keys = ("normal_dir", "abnormal_dir", "normal_test_dir", "mask_dir", "image_size")
            changed = [k for k in folder_keys if getattr(self, k) is not None]
            changed += [k for k, v in (("image_mode", "auto"), ("image_fit", "resize")) if getattr(self, k) != v]
            if changed:
                raise ValueError(f"{changed[0]} applies only to source 'image_folder' (source is '{self.source}')")
        extra = [k for k in ("normal_test_dir", "mask_dir") if getattr(self, k) is not None]
        if extra and self.normal_dir is None:
            raise ValueError(f"{extra[0]} needs normal_dir and abnormal_dir (anomalib's folder layout); set them or "
                             f"set {extra[0]} to null")
        if (self.normal_dir is None) != (self.abnormal_dir is None):
            raise ValueError("normal_dir and abnormal_dir go together (anomalib style): set both or neither")
        if self.normal_dir is not None and self.normal_classes is not None:
            raise ValueError("normal_dir/abnormal_dir set the anomaly protocol; set normal_classes to null")
        if self.image_size is not None and min(self.image_size) < 4:
            raise ValueError(f"image_size {self.image_size} is too small: [height, width] of at least 4 pixels")
        both = sorted(set(self.categorical_columns or []) & set(self.drop_columns or []))
        if both:
            raise ValueError(f"categorical_columns and drop_columns both list {both}; keep each column in one")
        special = [c for c in (self.categorical_columns or []) + (self.drop_columns or [])
                   if c in (self.label_column, self.anomaly_column)]
        if special:
            raise ValueError(f"categorical_columns/drop_columns list the label/anomaly column {special}")
        columns = self.feature_columns
        if columns is not None:
            if not columns:
                raise ValueError("feature_columns is empty (list columns or use null)")
            dups = sorted({c for c in columns if columns.count(c) > 1})
            if dups:
                raise ValueError(f"feature_columns lists {dups} more than once")
            clash = [c for c in columns if c in (self.label_column, self.anomaly_column)]
            if clash:
                raise ValueError(f"feature_columns includes label/anomaly column {clash}")
        return self


# ---------------------------------------------------------------- train
class TrainConfig(Strict):
    seed: int = 42
    max_epochs: int = Field(60, ge=1)
    patience: int = Field(10, ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"] = "auto"
    devices: int | Literal["auto"] | list[int] = 1
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: Literal["32-true", "32", "16-mixed", "bf16-mixed", "64-true", "64"] = "32-true"
    gradient_clip_val: float = Field(0.0, ge=0)
    deterministic: bool = True
    num_workers: int = Field(0, ge=0)
    num_threads: int | Literal["auto"] = "auto"  # torch intra-op threads per process (aeops.training.threads)
    progress_bar: bool = True
    data_dir: str = "data/prepared"
    output_dir: str = "models"
    metrics_file: str = "metrics/train.json"
    tuned_params: str | None = "tune/best_params.json"  # its overrides win while tune.enabled (and the data match)
    ensemble: int = Field(3, ge=1, le=32)  # networks of train.model trained side by side; scores average them
    min_epoch_rows: int = Field(2048, ge=0)  # an epoch draws at least this many rows: small tables are cycled
    max_epoch_rows: int | None = Field(8192, ge=1)  # and at most this many (a fresh random share of large data)
    # robust training (data with anomalies inside): each batch leaves out its robust_share of rows reconstructed
    # worst, after robust_warmup epochs; auto = on when prepare set no anomaly protocol (no labels)
    robust: bool | Literal["auto"] = "auto"
    robust_share: float = Field(0.2, gt=0, lt=0.5)
    robust_warmup: int = Field(5, ge=0)
    model: ModelConfig = Field(default_factory=ModelConfig)

    @field_validator("num_threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("must be a whole number ≥ 1 or 'auto'")


# ---------------------------------------------------------------- tune
class _SpaceBase(Strict):
    """`tune.space` without the variants' penalty knobs (SearchSpace adds those each variant owns)."""

    variant: Choices = choices(*[v.name for v in VARIANTS if "mlp" in v.architectures])  # those of the default
    architecture: Choices = choices("mlp")
    depth: IntKnob = int_range(1, 3)
    width: IntKnob = int_range(32, 256, log=True)
    conv_channels: IntKnob = int_range(8, 32, log=True)
    latent_dim: IntKnob = int_range(2, 16)
    activation: Choices = choices("relu", "gelu")
    dropout: FloatKnob = 0.0
    batch_norm: Choices = choices(False)
    lr: FloatKnob = float_range(1e-4, 1e-2, log=True)
    weight_decay: FloatKnob = float_range(1e-6, 1e-2, log=True)
    batch_size: IntKnob = choices(32, 64, 128)

    @model_validator(mode="after")
    def _known(self) -> _SpaceBase:
        allowed = {
            "variant": set(variants.names()),
            "architecture": {"mlp", "conv"},
            **{name: set(knob.allowed) for v in VARIANTS for name, knob in v.knobs.items() if knob.allowed},
        }
        for name, values in allowed.items():
            knob = getattr(self, name)
            bad = [c for c in (knob.choices if isinstance(knob, Choices) else [knob]) if c not in values]
            if bad:
                raise ValueError(f"{name} choices {bad} not allowed; allowed: {sorted(values)}")
        archs = set(self.architecture.choices if isinstance(self.architecture, Choices) else [self.architecture])
        for name in self.variant.choices if isinstance(self.variant, Choices) else [self.variant]:
            spec = variants.get(name)
            if not archs & set(spec.architectures):
                raise ValueError(f"variant choice {name!r} needs architecture {' or '.join(spec.architectures)} "
                                 f"({spec.architecture_reason}); add it to architecture's choices or drop the variant")
        return self


def _variant_knobs() -> dict[str, Any]:
    knobs = {name: (knob.kind, knob.default) for v in VARIANTS for name, knob in v.knobs.items()}
    taken = sorted(set(knobs) & set(_SpaceBase.model_fields))
    if taken:
        raise RuntimeError(f"variant knobs {taken} clash with tune.space's own knobs")
    return knobs


SearchSpace = create_model(
    "SearchSpace",
    __base__=_SpaceBase,
    __module__=__name__,
    __doc__="Each knob: a range {low, high, log}, a list {choices: [...]}, or a fixed value.",
    **_variant_knobs(),
)


class TuneConfig(Strict):
    enabled: bool = True
    study_name: str = "aeops"
    storage: str | None = None  # OPTUNA_STORAGE wins; null = a journal file under output_dir
    n_trials: int = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0)  # seconds; no new trial starts after it
    n_workers: int = Field(1, ge=1)
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "successive_halving", "none"] = "median"
    pruner_startup_trials: int = Field(2, ge=0)  # median: trials before pruning starts
    pruner_warmup_epochs: int = Field(0, ge=0)  # median: epochs before a trial can be pruned
    objective: Literal["auto", "val_recon_loss", "val_auroc", "val_synthetic_auroc"] = "auto"
    seed: int = 42
    max_epochs: int = Field(15, ge=1)  # per trial
    min_epoch_rows: int = Field(2048, ge=0)  # a trial's epoch draws at least this many rows (small tables cycled)
    max_train_rows: int | None = Field(2048, ge=1)  # each trial trains on this many train rows (seeded); train uses all
    patience: int = Field(5, ge=0)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    progress_bar: bool = True
    data_dir: str = "data/prepared"
    output_dir: str = "tune"
    space: SearchSpace = Field(default_factory=SearchSpace)


# ---------------------------------------------------------------- evaluate
class EvaluateConfig(Strict):
    threshold_percentile: float = Field(95.0, gt=0, lt=100)  # of normal validation scores (an anomaly protocol's)
    # without an anomaly protocol the validation rows hold the anomalies too: the threshold flags this share of
    # them instead; auto = estimated from their scores (beyond 3 robust SDs), null = threshold_percentile
    contamination: float | Literal["auto"] | None = "auto"
    score_smoothing: float = Field(0.0, ge=0, le=10)  # sigma (pixels) of the residual's Gaussian smoothing; 0 = plain MSE
    score_top_fraction: float = Field(1.0, gt=0, le=1)  # mean over this share of largest squared residuals; 1 = all
    score_standardize: bool | Literal["auto"] = False  # residuals / their per-feature RMS on normal val rows; auto = tables
    # add the distance to the k nearest training rows (robust z-sum); auto: tables, where it wins on validation
    # anomalies, with the weight in knn_weights that separates them best (true: weight 1)
    score_neighbors: bool | Literal["auto"] = "auto"
    knn_neighbors: int = Field(5, ge=1)
    knn_weights: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0], min_length=1)
    trustworthiness_max_rows: int = Field(2000, ge=10)
    max_rows: int | None = Field(None, ge=1)  # rows a split is evaluated on (a seeded sample); null = memory's bound
    isolation_forest_trees: int = Field(200, ge=1)
    seed: int = 42
    data_dir: str = "data/prepared"
    model_dir: str = "models"
    metrics_file: str = "metrics/evaluate.json"
    plots_dir: str = "plots/evaluate"
    bundle_dir: str = "bundle"  # the scoring model: network, scaler, rule and threshold (register reads it)
    report_dir: str = "reports"  # the run's offline HTML report (<run id>.html); not a DVC out

    @model_validator(mode="after")
    def _weights(self) -> EvaluateConfig:
        w = self.knn_weights  # in order, since a tie on validation keeps the smaller weight
        if any(v <= 0 for v in w) or w != sorted(set(w)):
            raise ValueError(f"knn_weights must be positive and increasing, e.g. [1, 2, 4]; got {w}")
        c = self.contamination
        if isinstance(c, float) and not 0 < c < 0.5:
            raise ValueError(f"contamination must be a share between 0 and 0.5 (e.g. 0.05), auto or null; got {c}")
        return self


# ---------------------------------------------------------------- register / promote / serve
PROMOTION_METRICS = {"auroc": True, "auprc": True, "f1": True, "psnr": True, "recon_mse": False}


class RegisterConfig(Strict):
    model_name: str = Field("aeops-autoencoder", min_length=1)
    promotion_metric: Literal["auroc", "auprc", "f1", "psnr", "recon_mse"] = "auroc"
    data_dir: str = "data/prepared"
    bundle_dir: str = "bundle"
    metrics_file: str = "metrics/evaluate.json"
    output_file: str = "registry/registered.json"

    @property
    def higher_is_better(self) -> bool:
        return PROMOTION_METRICS[self.promotion_metric]


class ServeConfig(Strict):
    """`aeops serve` / `make serve`; each key yields to its command-line flag (the port also to AEOPS_SERVE_PORT)."""

    model: str | None = None  # model URI; null = models:/<register.model_name>@production
    host: str = Field("127.0.0.1", min_length=1)  # the interface; 0.0.0.0 exposes the server to the network
    port: int = Field(5001, ge=1, le=65535)
    workers: int = Field(1, ge=1)  # server processes


# ---------------------------------------------------------------- monitor
class MonitorConfig(Strict):
    path: str = Field("data/incoming/batch.csv", min_length=1)  # the batch (raw units) the DVC stage checks
    model: str | None = None  # model URI for the stage; null = the version `register` just registered
    alpha: float = Field(0.01, gt=0, lt=0.5)  # false-alarm budget of a clean batch (features, scores, flagged share)
    psi_threshold: float = Field(0.1, ge=0)  # a feature drifts only with PSI at least this
    chunk_rows: int = Field(50_000, ge=1)
    output_dir: str = "monitoring"  # JSON + Markdown report per check; not a DVC out


# ---------------------------------------------------------------- mlflow
class MlflowConfig(Strict):
    experiment: str = "aeops"
    tracking_uri: str | None = None  # MLFLOW_TRACKING_URI wins; default sqlite:///mlflow.db
    artifact_root: str = "mlartifacts"


SECTIONS: dict[str, type[Strict]] = {
    "prepare": PrepareConfig,
    "tune": TuneConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "register": RegisterConfig,
    "serve": ServeConfig,
    "monitor": MonitorConfig,
    "mlflow": MlflowConfig,
}


_MODEL_NAMES = {"FloatRange", "IntRange", "Choices"}


def _format_error(section: str, err: ValidationError) -> str:
    """One line per problem: the dotted key, the value given and what is allowed."""
    first = err.errors()[0]
    # Union members show up in the location as 'FloatRange', 'function-after[...]', 'int': drop them.
    parts = [p for p in first["loc"] if not _is_union_tag(p)]
    first["loc"] = tuple(parts)
    loc = ".".join(str(p) for p in (section, *parts))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(SECTIONS[section], first["loc"][:-1])
        return f"params.yaml: unknown key '{loc}' (allowed here: {allowed})"
    if not parts:  # a check across keys: the input is the whole section, too long to print
        return f"params.yaml: {loc}: {msg}"
    value = first.get("input")
    return f"params.yaml: {loc} = {value!r} is invalid: {msg}"


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (
        "[" in part or part in {"int", "float", "bool", "str"} or part in _MODEL_NAMES
    )


def _allowed_keys(model: type[BaseModel], path: tuple) -> str:
    for part in path:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return "see params.yaml comments"
        model = ann
    return ", ".join(model.model_fields)


def parse_section(section: str, raw: dict[str, Any] | None) -> Any:
    """Validate one section's raw dict (then apply `AEOPS_CAP`); raise ConfigError with a one-line message."""
    model = SECTIONS[section]
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml: section '{section}' must be a mapping, got {raw!r}")
    try:
        return apply_caps(section, model.model_validate(raw))
    except ValidationError as err:
        raise ConfigError(_format_error(section, err)) from None


# AEOPS_CAP="epochs=2,trials=2,rows=1000" caps sizes for smoke runs (the journey tests): the same code
# path with smaller numbers, never a different one. Unset in real runs. It is read here only, as an overlay
# on the params sections: the library below sees ordinary params (train.max_epochs, evaluate.max_rows …).
CAPS = {"epochs": (("train", "max_epochs"), ("tune", "max_epochs")), "trials": (("tune", "n_trials"),),
        "rows": (("prepare", "max_train_rows"), ("prepare", "max_eval_rows"), ("evaluate", "max_rows"))}


def caps() -> dict[str, int]:
    text = os.environ.get("AEOPS_CAP", "").strip()
    found: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in CAPS or not value.isdigit() or int(value) < 1:
            raise ConfigError(f"AEOPS_CAP: '{item}' is invalid; use e.g. epochs=2,trials=2,rows=1000 "
                              f"(names: {', '.join(CAPS)}; positive integers)")
        found[name] = int(value)
    return found


def apply_caps(section: str, cfg: Any) -> Any:
    update = {}
    for name, limit in caps().items():
        for sec, key in CAPS[name]:
            current = getattr(cfg, key) if sec == section else None
            if sec == section and (current is None or current > limit):
                update[key] = limit
    if "max_epochs" in update and getattr(cfg, "min_epoch_rows", 0):
        update["min_epoch_rows"] = 0  # capped epochs are quick ones: small tables are not cycled
    if update:
        print(f"AEOPS_CAP: {section} " + ", ".join(f"{k}={v}" for k, v in update.items()), file=sys.stderr)
    return cfg.model_copy(update=update) if update else cfg


def _yaml_where(err: yaml.YAMLError) -> str:
    """' at line L, column C: <problem>' from PyYAML's marks (1-based, as editors count)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(err, "context", None)
    return f"{where}: {problem}" + (f" ({context})" if context else "")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML{_yaml_where(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def load_section(section: str, path: str | Path = "params.yaml") -> Any:
    """Read and validate one section of params.yaml (a stage reads only its own)."""
    return parse_section(section, load_params(path).get(section))
