"""The saved-model format: one `ModelBundle` holds everything that turns raw rows into scores.

On disk it is a folder: `network.pt` (the network's config and weights, and the training rows of a
kNN score term where the rule has one: a plain dict that loads with `torch.load(weights_only=True)`),
`bundle.json` (scaler, feature names, scoring rule and threshold, provenance) and `profile.json` (the reference profile that `aeops monitor` compares
batches with; absent in bundles made before it existed). `evaluate` writes it as its DVC out; `register` logs it inside the MLflow
pyfunc; serving, promotion, batch scoring and ONNX export read it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aeops.errors import DataError
from aeops.io import atomic_path, read_json, write_json

if TYPE_CHECKING:
    import torch

FORMAT = 1
NETWORK, META, PROFILE, PRIOR = "network.pt", "bundle.json", "profile.json", "prior.json"


@dataclass(frozen=True)
class ScoringRule:
    """How a row's score is computed and where the anomaly threshold lies."""

    threshold: float
    smoothing: float = 0.0  # Gaussian sigma (pixels) on the residual image; 0 = none
    top_fraction: float = 1.0  # mean of this share of the largest squared residuals; 1 = all
    threshold_percentile: float | None = None  # of normal validation scores: 100 - the expected flagged %
    residual_scale: list[list[float]] | None = None  # (members, features) residual RMS on normal val rows; None = raw
    neighbors: int = 0  # k > 0: the score adds the mean distance to the k nearest training rows (the bundle's reference)
    fusion: list[list[float]] | None = None  # [[median, IQR] of normal val residual scores, [the same of their distances]]

    @property
    def expected_flagged(self) -> float | None:
        return None if self.threshold_percentile is None else 1 - self.threshold_percentile / 100


@dataclass(frozen=True)
class ModelBundle:
    """Network config and weights, the train-fitted scaler, the scoring rule, and where they came from."""

    model_cfg: dict[str, Any]
    n_features: int
    image_shape: list[int] | None
    unit_interval: bool
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    scaler: dict[str, Any] = field(repr=False)
    data_hash: str
    run_id: str | None = None
    git_commit: str | None = None
    scoring: ScoringRule | None = None
    members: int = 1  # > 1: an ensemble of that many networks of model_cfg (scores average their residuals)
    profile: dict[str, Any] | None = field(default=None, repr=False)  # monitoring reference (aeops.monitoring.profile)
    latent_prior: dict[str, Any] | None = field(default=None, repr=False)  # image models: aeops.compression.prior
    reference: Any = field(default=None, repr=False)  # (n, features) float32 scaled training rows: the kNN term's

    @property
    def feature_names(self) -> list[str]:
        return list(self.scaler["feature_names"])

    @property
    def latent_dim(self) -> int:
        return int(self.model_cfg["latent_dim"])

    def network(self) -> torch.nn.Module:
        """The autoencoder with its weights, in evaluation mode."""
        from aeops.models.factory import build_autoencoder

        shape = tuple(self.image_shape) if self.image_shape else None
        model = build_autoencoder(self.model_cfg, self.n_features, shape, self.unit_interval, self.members)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def with_scoring(self, rule: ScoringRule, profile: dict[str, Any] | None = None,
                     latent_prior: dict[str, Any] | None = None, reference: Any = None) -> ModelBundle:
        if bool(rule.neighbors) != (reference is not None):
            raise ValueError("a scoring rule with a kNN term needs the reference rows, and only it")
        return ModelBundle(**{**self._fields(), "scoring": rule, "profile": profile, "latent_prior": latent_prior,
                              "reference": reference})

    def save(self, path: str | Path) -> Path:
        """Write the folder atomically (a failed write leaves the old bundle, or none)."""
        import numpy as np
        import torch

        with atomic_path(path, replace_dir=True) as tmp:
            tmp.mkdir()
            net = {k: getattr(self, k)
                   for k in ("model_cfg", "n_features", "image_shape", "unit_interval", "state_dict", "members")}
            if self.reference is not None:
                net["reference"] = torch.from_numpy(np.ascontiguousarray(self.reference, dtype=np.float32))
            torch.save(net, tmp / NETWORK)
            meta = {k: getattr(self, k) for k in ("scaler", "data_hash", "run_id", "git_commit")}
            write_json(tmp / META, {"format": FORMAT, **meta, "scoring": asdict(self.scoring) if self.scoring else None})
            for name, content in ((PROFILE, self.profile), (PRIOR, self.latent_prior)):
                if content is not None:
                    write_json(tmp / name, content)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        import torch

        path = Path(path)
        meta = _meta(path)
        net = torch.load(path / NETWORK, map_location="cpu", weights_only=True)
        if "reference" in net:
            net["reference"] = net["reference"].numpy()
        scoring = ScoringRule(**meta["scoring"]) if meta.get("scoring") else None
        profile, prior = (read_json(path / f) if (path / f).is_file() else None for f in (PROFILE, PRIOR))
        return cls(**net, scaler=meta["scaler"], data_hash=meta["data_hash"], run_id=meta.get("run_id"),
                   git_commit=meta.get("git_commit"), scoring=scoring, profile=profile, latent_prior=prior)

    @classmethod
    def from_training(cls, model_dir: str | Path, data_dir: str | Path) -> ModelBundle:
        """The trained network (best checkpoint, `run.json`) with the prepared data's scaler; no scoring yet."""
        from aeops.data.prepared import load_scaler
        from aeops.models.factory import load_autoencoder

        run_path = Path(model_dir) / "run.json"
        if not run_path.is_file():
            raise DataError(f"{run_path}: not found; run `dvc repro train` first")
        info = read_json(run_path)
        model, hparams = load_autoencoder(info["best_checkpoint"])
        return cls(
            model_cfg=hparams["model_cfg"], n_features=int(hparams["n_features"]), image_shape=hparams["image_shape"],
            unit_interval=bool(hparams["unit_interval"]), state_dict=model.state_dict(), scaler=load_scaler(data_dir),
            members=int(hparams.get("members", 1)),
            data_hash=info["data_hash"], run_id=info["run_id"], git_commit=info.get("git_commit"),
        )

    def _fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _meta(path: Path) -> dict[str, Any]:
    if not (path / NETWORK).is_file() or not (path / META).is_file():
        raise DataError(f"{path}: not a model bundle ({NETWORK} and {META} expected); run `dvc repro evaluate` first")
    meta = read_json(path / META)
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}/{META}: bundle format {meta.get('format')!r}, this aeops reads {FORMAT}")
    return meta


def bundle_run_id(path: str | Path) -> str | None:
    """The training run a bundle came from, read without loading the network (or importing torch)."""
    return _meta(Path(path)).get("run_id")
