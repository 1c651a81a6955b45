"""Vanilla (undercomplete) autoencoder: no penalty, the `latent_dim` bottleneck alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aeops.variants.spec import VariantSpec

if TYPE_CHECKING:
    from torch import nn

    from aeops.models.autoencoder import Autoencoder


def build(encoder: nn.Module, decoder: nn.Module, cfg: None, n_features: int) -> Autoencoder:
    from aeops.models.autoencoder import Autoencoder

    return Autoencoder(encoder, decoder)


SPEC = VariantSpec(name="vanilla", build=build)
