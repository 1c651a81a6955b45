"""Sparse: `l1_weight`·mean‖z‖₁ on the code plus `kl_weight`·KL sparsity (target ρ) of hidden units."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from aeops.params_base import FloatKnob, Strict, float_range
from aeops.variants.spec import Knob, Suggest, VariantSpec

if TYPE_CHECKING:
    from torch import nn

    from aeops.models.autoencoder import Autoencoder


class SparseConfig(Strict):
    l1_weight: float = Field(1e-3, ge=0)
    kl_weight: float = Field(1e-2, ge=0)
    target: float = Field(0.05, gt=0, lt=1)


def build(encoder: nn.Module, decoder: nn.Module, cfg: SparseConfig, n_features: int) -> Autoencoder:
    from aeops.models.autoencoder import SparseAutoencoder

    return SparseAutoencoder(encoder, decoder, l1_weight=cfg.l1_weight, kl_weight=cfg.kl_weight, target=cfg.target)


def sample(suggest: Suggest) -> dict[str, Any]:
    return {
        "l1_weight": suggest("l1_weight"),
        "kl_weight": suggest("kl_weight"),
        "target": suggest("sparsity_target"),
    }


SPEC = VariantSpec(
    name="sparse",
    build=build,
    config=SparseConfig,
    knobs={
        "l1_weight": Knob(FloatKnob, float_range(1e-6, 1e-2, log=True)),
        "kl_weight": Knob(FloatKnob, float_range(1e-5, 1e-1, log=True)),
        "sparsity_target": Knob(FloatKnob, float_range(0.01, 0.3)),
    },
    sample=sample,
)
