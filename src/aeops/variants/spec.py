"""What one autoencoder variant declares, in one place: see `VariantSpec`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from aeops.params_base import Strict

if TYPE_CHECKING:
    from torch import nn

    from aeops.models.autoencoder import Autoencoder

Suggest = Callable[[str], Any]
"""A `tune.space` knob name → the value sampled for it in the current trial."""


class Knob(NamedTuple):
    """A `tune.space` knob a variant owns: its type, its default and, for choices, the allowed values."""

    kind: Any  # FloatKnob, IntKnob or Choices
    default: Any  # a pydantic Field (params_base.float_range, choices, ...) or a plain value
    allowed: tuple[Any, ...] | None = None


def _same(latent_dim: int) -> int:
    return latent_dim


@dataclass(frozen=True)
class VariantSpec:
    """One variant: its name, params section, builder, encoder width and search-space suggestions.

    - `config`: the model of its section `train.model.<name>` (None: the variant has no params).
    - `build(encoder, decoder, section, n_features)`: the `Autoencoder`; import torch modules inside it.
    - `code_width(latent_dim)`: how wide the encoder's output must be.
    - `knobs`: the `tune.space` knobs it owns, in suggestion order (names are user-facing).
    - `sample(suggest)`: its section's overrides for one trial, calling `suggest(knob)` in a fixed order.
    - `batch_norm_conflict`: why the variant cannot train with batch norm (None: it can).
    - `architectures`: the architectures it builds on (and why not the others, where it lacks one).
    """

    name: str
    build: Callable[[nn.Module, nn.Module, Any, int], Autoencoder]
    config: type[Strict] | None = None
    code_width: Callable[[int], int] = _same
    knobs: Mapping[str, Knob] = field(default_factory=dict)
    sample: Callable[[Suggest], dict[str, Any]] | None = None
    batch_norm_conflict: str | None = None
    architectures: tuple[str, ...] = ("mlp", "conv")
    architecture_reason: str = ""
