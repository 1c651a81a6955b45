"""The saved-model format: one `ModelBundle` holds everything that turns raw rows into scores.

On disk it is a folder: `network.pt` (the network's config and weights, and the training rows of a
kNN score term where the rule has one: a plain dict that loads with `torch.load(weights_only=True)`),
`bundle.json` (scaler, feature names, scoring rule and threshold, provenance), `profile.json` (the
reference profile that `aeops monitor` compares batches with; absent in bundles made before it
existed) and `prior.json` (image models: what `aeops compress` codes with). `evaluate` writes it as its
DVC out; `register` logs it inside the MLflow pyfunc; serving, promotion, batch scoring, compression
and ONNX export read it back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aeops.errors import DataError
from aeops.io import atomic_path, read_json, write_json
from aeops.scoring.preprocess import Preprocessor
from aeops.scoring.profile import build_profile
from aeops.scoring.rule import RuleScorer, ScoringRule

if TYPE_CHECKING:
    import torch

    from aeops.scoring.fit import FittedRule

FORMAT = 1
NETWORK, META, PROFILE, PRIOR = "network.pt", "bundle.json", "profile.json", "prior.json"


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
    profile: dict[str, Any] | None = field(default=None, repr=False)  # monitoring reference (aeops.scoring.profile)
    latent_prior: dict[str, Any] | None = field(default=None, repr=False)  # image models: aeops.compression.prior
    reference: Any = field(default=None, repr=False)  # (n, features) float32 scaled training rows: the kNN term's

    @property
    def feature_names(self) -> list[str]:
        return list(self.scaler["feature_names"])

    @property
    def latent_dim(self) -> int:
        return int(self.model_cfg["latent_dim"])

    @property
    def preprocessor(self) -> Preprocessor:
        return Preprocessor(self.scaler)

    def rule_scorer(self) -> RuleScorer:
        """The bundle's scoring rule, ready to apply to scaled rows and their reconstructions."""
        if self.scoring is None:
            raise ValueError("this bundle has no scoring rule yet (evaluate adds it)")
        return RuleScorer(self.scoring, image_shape=self.image_shape, reference=self.reference)

    def network(self) -> torch.nn.Module:
        """The autoencoder with its weights, in evaluation mode."""
        from aeops.models.factory import build_autoencoder

        shape = tuple(self.image_shape) if self.image_shape else None
        model = build_autoencoder(self.model_cfg, self.n_features, image_shape=shape, unit_interval=self.unit_interval,
                                  members=self.members, layout=self.preprocessor.layout)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def with_scoring(
        self, fitted: FittedRule, *, train_x: np.ndarray, latent_prior: dict[str, Any] | None = None
    ) -> ModelBundle:
        """This network with its fitted rule (and its kNN reference rows where it has a kNN term), the
        reference profile of the (scaled) training rows and the normal validation scores, and a code prior."""
        rule = fitted.rule
        if not math.isfinite(rule.threshold):
            raise ValueError(f"a scoring rule with threshold {rule.threshold}: fit it on validation scores first")
        profile = build_profile(
            self.feature_names,
            self.preprocessor.unscale(train_x),
            val_scores=fitted.val_scores,
            threshold=rule.threshold,
            expected_flagged=rule.expected_flagged or 0.0,
        )
        return ModelBundle(
            **{
                **self._fields(),
                "scoring": rule,
                "profile": profile.to_dict(),
                "latent_prior": latent_prior,
                "reference": fitted.reference,
            }
        )

    def save(self, path: str | Path) -> Path:
        """Write the folder atomically (a failed write leaves the old bundle, or none)."""
        import torch

        with atomic_path(path, replace_dir=True) as tmp:
            tmp.mkdir()
            net = {
                k: getattr(self, k)
                for k in ("model_cfg", "n_features", "image_shape", "unit_interval", "state_dict", "members")
            }
            if self.reference is not None:
                net["reference"] = torch.from_numpy(np.ascontiguousarray(self.reference, dtype=np.float32))
            torch.save(net, tmp / NETWORK)
            meta = {k: getattr(self, k) for k in ("scaler", "data_hash", "run_id", "git_commit")}
            write_json(
                tmp / META, {"format": FORMAT, **meta, "scoring": asdict(self.scoring) if self.scoring else None}
            )
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
        return cls(
            **net,
            scaler=meta["scaler"],
            data_hash=meta["data_hash"],
            run_id=meta.get("run_id"),
            git_commit=meta.get("git_commit"),
            scoring=scoring,
            profile=profile,
            latent_prior=prior,
        )

    @classmethod
    def from_training(cls, model_dir: str | Path, *, scaler: dict[str, Any]) -> ModelBundle:
        """The trained network (best checkpoint, `run.json`) with the prepared data's scaler; no scoring yet."""
        from aeops.models.factory import load_autoencoder

        run_path = Path(model_dir) / "run.json"
        if not run_path.is_file():
            raise DataError(f"{run_path}: not found; run `dvc repro train` first")
        info = read_json(run_path)
        model, hparams = load_autoencoder(info["best_checkpoint"])
        return cls(
            model_cfg=hparams["model_cfg"],
            n_features=int(hparams["n_features"]),
            image_shape=hparams["image_shape"],
            unit_interval=bool(hparams["unit_interval"]),
            state_dict=model.state_dict(),
            scaler=scaler,
            members=int(hparams.get("members", 1)),
            data_hash=info["data_hash"],
            run_id=info["run_id"],
            git_commit=info.get("git_commit"),
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
