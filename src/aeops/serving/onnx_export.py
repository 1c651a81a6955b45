"""Export the trained encoder and decoder to ONNX (scaled features in, codes / reconstructions out)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aeops.errors import DataError
from aeops.io import atomic_path
from aeops.models.lightning import load_autoencoder


class _Encode(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)


class _Decode(_Encode):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


def export_onnx(checkpoint: str, out_dir: str) -> dict[str, Path]:
    """Write `encoder.onnx` (x → z) and `decoder.onnx` (z → reconstruction) with a dynamic batch axis."""
    import warnings

    if not Path(checkpoint).is_file():
        raise DataError(f"{checkpoint}: checkpoint not found; run `dvc repro train` first or pass --checkpoint")
    model, hparams = load_autoencoder(checkpoint)
    n_features, latent = hparams["n_features"], hparams["model_cfg"]["latent_dim"]
    out = Path(out_dir)
    paths = {}
    for name, module, example, (inp, outp) in (
        ("encoder", _Encode(model), torch.rand(2, n_features), ("x", "z")),
        ("decoder", _Decode(model), torch.rand(2, latent), ("z", "reconstruction")),
    ):
        with atomic_path(out / f"{name}.onnx") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(), (example,), str(tmp), input_names=[inp], output_names=[outp],
                dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                verbose=False,
            )
        paths[name] = out / f"{name}.onnx"
    return paths
