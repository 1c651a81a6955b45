"""Export the trained encoder and decoder to ONNX (scaled features in, codes / reconstructions out)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aeops.errors import DataError
from aeops.io import atomic_path
from aeops.scoring.bundle import ModelBundle


class _Encode(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)


class _Decode(_Encode):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


def export_onnx(bundle_dir: str, out_dir: str) -> dict[str, Path]:
    """Write `encoder.onnx` (x → z) and `decoder.onnx` (z → reconstruction) with a dynamic batch axis.

    Inputs are scaled features (the bundle's scaler is not part of the graph).
    """
    import warnings

    bundle = ModelBundle.load(bundle_dir)
    table = bundle.preprocessor.table
    if table is not None and table.mixed:
        kinds = sorted({s.role for s in table.specs if s.role != "numeric"} | ({"missing"} if any(
            s.indicator for s in table.specs) else set()))
        raise DataError(f"{bundle_dir}: ONNX export does not cover a mixed-type table's encoding yet ({', '.join(kinds)} "
                        "columns: the graph would expect encoded inputs no user sends); serve the MLflow model instead")
    model, n_features, latent = bundle.network(), bundle.n_features, bundle.latent_dim
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
