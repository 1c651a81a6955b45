"""Variational: the encoder emits (mu, logvar); `beta`·KL per input value; scoring uses the mean."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from aeops.params_base import FloatKnob, Strict, float_range
from aeops.variants.spec import Knob, Suggest, VariantSpec

if TYPE_CHECKING:
    from torch import nn

    from aeops.models.autoencoder import Autoencoder


class VariationalConfig(Strict):
    beta: float = Field(1.0, ge=0)


def build(encoder: nn.Module, decoder: nn.Module, cfg: VariationalConfig, n_features: int) -> Autoencoder:
    from aeops.models.autoencoder import VariationalAutoencoder

    return VariationalAutoencoder(encoder, decoder, n_features, cfg.beta)


def sample(suggest: Suggest) -> dict[str, Any]:
    return {"beta": suggest("beta")}


SPEC = VariantSpec(
    name="variational",
    build=build,
    config=VariationalConfig,
    code_width=lambda latent_dim: 2 * latent_dim,  # mu and logvar
    knobs={"beta": Knob(FloatKnob, float_range(0.01, 4.0, log=True))},
    sample=sample,
)
