"""Autoencoder models: pure `nn.Module`s (networks, variants) apart from their Lightning wrapper."""

from aeops.models.autoencoder import (
    AEOutput,
    Autoencoder,
    ContractiveAutoencoder,
    DenoisingAutoencoder,
    SparseAutoencoder,
    VariationalAutoencoder,
)
from aeops.models.factory import build_autoencoder

__all__ = [
    "AEOutput",
    "Autoencoder",
    "ContractiveAutoencoder",
    "DenoisingAutoencoder",
    "SparseAutoencoder",
    "VariationalAutoencoder",
    "build_autoencoder",
]
