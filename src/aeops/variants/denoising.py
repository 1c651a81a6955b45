"""Denoising: reconstructs clean x from a copy with Gaussian (`std`) or masking (`mask_prob`) noise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import Field

from aeops.params_base import Choices, FloatKnob, Strict, choices, float_range
from aeops.variants.spec import Knob, Suggest, VariantSpec

if TYPE_CHECKING:
    from torch import nn

    from aeops.models.autoencoder import Autoencoder

Noise = Literal["gaussian", "masking"]


class DenoisingConfig(Strict):
    noise: Noise = "gaussian"
    std: float = Field(0.2, gt=0)
    mask_prob: float = Field(0.25, gt=0, lt=1)


def build(encoder: nn.Module, decoder: nn.Module, cfg: DenoisingConfig, n_features: int) -> Autoencoder:
    from aeops.models.autoencoder import DenoisingAutoencoder

    return DenoisingAutoencoder(encoder, decoder, noise=cfg.noise, std=cfg.std, mask_prob=cfg.mask_prob)


def sample(suggest: Suggest) -> dict[str, Any]:
    noise = suggest("noise")
    level = {"std": suggest("noise_std")} if noise == "gaussian" else {"mask_prob": suggest("mask_prob")}
    return {"noise": noise, **level}


SPEC = VariantSpec(
    name="denoising",
    build=build,
    config=DenoisingConfig,
    knobs={
        "noise": Knob(Choices, choices(*get_args(Noise)), allowed=get_args(Noise)),
        "noise_std": Knob(FloatKnob, float_range(0.05, 0.5)),
        "mask_prob": Knob(FloatKnob, float_range(0.05, 0.5)),
    },
    sample=sample,
)
