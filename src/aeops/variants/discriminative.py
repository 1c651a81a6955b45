"""Discriminative: a conv autoencoder that undoes synthetic defects, plus a head that segments them (DRAEM-like);
the head's defect probability is what the scoring rule scores (`aeops.models.discriminative`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from aeops.errors import ConfigError
from aeops.params_base import FloatKnob, Strict, float_range
from aeops.variants.spec import Knob, Suggest, VariantSpec

if TYPE_CHECKING:
    from torch import nn

    from aeops.models.autoencoder import Autoencoder


WHY = "its head segments images: image data and architecture conv"


class DiscriminativeConfig(Strict):
    head_channels: list[int] = Field(default_factory=lambda: [8, 16], min_length=2, max_length=2)
    defect_share: float = Field(0.5, gt=0, le=1)  # share of training images given a synthetic defect
    head_weight: float = Field(1.0, gt=0)  # the head's focal loss against the reconstruction's MSE


def build(encoder: nn.Module, decoder: nn.Module, cfg: DiscriminativeConfig, n_features: int) -> Autoencoder:
    from aeops.models.discriminative import DiscriminativeAutoencoder

    shape = getattr(encoder, "image_shape", None)
    if shape is None:  # ModelConfig refuses the combination first; a hand-built encoder lands here
        raise ConfigError(f"variant 'discriminative' needs a conv encoder ({WHY})")
    return DiscriminativeAutoencoder(encoder, decoder, image_shape=shape, head_channels=list(cfg.head_channels),
                                     defect_share=cfg.defect_share, head_weight=cfg.head_weight)


def sample(suggest: Suggest) -> dict[str, Any]:
    return {"defect_share": suggest("defect_share"), "head_weight": suggest("head_weight")}


SPEC = VariantSpec(
    name="discriminative",
    build=build,
    config=DiscriminativeConfig,
    knobs={"defect_share": Knob(FloatKnob, float_range(0.25, 0.75)),
           "head_weight": Knob(FloatKnob, float_range(0.3, 3.0, log=True))},
    sample=sample,
    architectures=("conv",),
    architecture_reason=WHY,
)
