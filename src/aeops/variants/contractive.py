"""Contractive: `weight`·mean‖∂z/∂x‖²_F of the whole encoder (exact Jacobian or a JVP estimate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from aeops.params_base import FloatKnob, Strict, float_range
from aeops.variants.spec import Knob, Suggest, VariantSpec

if TYPE_CHECKING:
    from torch import nn

    from aeops.models.autoencoder import Autoencoder


class ContractiveConfig(Strict):
    weight: float = Field(1e-3, ge=0)
    estimator: Literal["exact", "random_projection"] = "exact"
    projections: int = Field(1, ge=1)  # random_projection: JVPs per step


def build(encoder: nn.Module, decoder: nn.Module, cfg: ContractiveConfig, n_features: int) -> Autoencoder:
    from aeops.models.autoencoder import ContractiveAutoencoder

    return ContractiveAutoencoder(encoder, decoder, weight=cfg.weight, estimator=cfg.estimator, projections=cfg.projections)


def sample(suggest: Suggest) -> dict[str, Any]:
    return {"weight": suggest("contractive_weight")}


SPEC = VariantSpec(
    name="contractive",
    build=build,
    config=ContractiveConfig,
    knobs={"contractive_weight": Knob(FloatKnob, float_range(1e-6, 1e-2, log=True))},
    sample=sample,
    batch_norm_conflict="needs a per-sample encoder Jacobian",
)
