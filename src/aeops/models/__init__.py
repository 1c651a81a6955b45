"""Autoencoder models: pure `nn.Module`s (networks, variants) apart from their Lightning wrapper.

Names are resolved lazily, so `aeops.models.config` (the schema `aeops.config` uses) imports without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AEOutput",
    "Autoencoder",
    "ContractiveAutoencoder",
    "DenoisingAutoencoder",
    "SparseAutoencoder",
    "VariationalAutoencoder",
    "build_autoencoder",
]


def __getattr__(name: str) -> Any:
    if name == "build_autoencoder":
        from aeops.models.factory import build_autoencoder

        return build_autoencoder
    if name in __all__:
        from aeops.models import autoencoder

        return getattr(autoencoder, name)
    raise AttributeError(f"module 'aeops.models' has no attribute {name!r}")
