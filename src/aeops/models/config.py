"""`train.model`'s schema: the architecture params and one section per registered variant (pydantic, strict).

The models' own hyperparameters, so `aeops.models` validates a config dict without knowing the params file;
`aeops.config` places it under `train.model`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model, model_validator

from aeops import variants
from aeops.params_base import Strict

VARIANTS = variants.freeze()  # the variant registry: names, train.model sections and tune.space knobs
Variant = Literal[variants.names()]  # type: ignore[valid-type]
Activation = Literal["relu", "leaky_relu", "gelu", "elu", "tanh", "sigmoid", "silu"]


class MLPConfig(Strict):
    hidden: list[int] = Field(default_factory=lambda: [128, 64])
    activation: Activation = "relu"
    batch_norm: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _widths(self) -> MLPConfig:
        if any(w <= 0 for w in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {self.hidden}")
        return self


class ConvConfig(Strict):
    channels: list[int] = Field(default_factory=lambda: [16, 32], min_length=1)
    kernel_size: int = Field(3, ge=1, le=11)
    activation: Activation = "relu"
    batch_norm: bool = False

    @model_validator(mode="after")
    def _odd(self) -> ConvConfig:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if any(c <= 0 for c in self.channels):
            raise ValueError(f"channels must be positive, got {self.channels}")
        return self


class _ModelBase(Strict):
    """`train.model` without the variants' sections (ModelConfig adds one per registered variant)."""

    variant: Variant = "vanilla"
    architecture: Literal["mlp", "conv"] = "mlp"
    latent_dim: int = Field(8, ge=1)
    output_activation: Literal["auto", "identity", "sigmoid"] = "auto"
    mlp: MLPConfig = Field(default_factory=MLPConfig)
    conv: ConvConfig = Field(default_factory=ConvConfig)

    @model_validator(mode="after")
    def _batch_norm(self) -> _ModelBase:
        bn = self.mlp.batch_norm if self.architecture == "mlp" else self.conv.batch_norm
        spec = variants.get(self.variant)
        if spec.batch_norm_conflict and bn:
            raise ValueError(f"variant '{self.variant}' {spec.batch_norm_conflict}: set batch_norm: false")
        if self.architecture not in spec.architectures:
            raise ValueError(f"variant '{self.variant}' needs architecture {' or '.join(map(repr, spec.architectures))} "
                             f"({spec.architecture_reason}), not {self.architecture!r}")
        return self


# `train.model`: the architecture params plus one section per registered variant that has params.
ModelConfig = create_model(
    "ModelConfig",
    __base__=_ModelBase,
    __module__=__name__,
    **{v.name: (v.config, Field(default_factory=v.config)) for v in VARIANTS if v.config is not None},
)
