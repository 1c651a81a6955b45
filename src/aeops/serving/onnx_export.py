"""Export a model bundle as one ONNX graph: raw rows in, the served scores out (`aeops.scoring.graph`).

`model.onnx` holds the scaling, every ensemble member, the scoring rule (smoothing, residual scale, top
fraction, the kNN term against the bundle's reference rows, the fusion), the threshold and the score
percentile; its `metadata_props` carry the model's name, version, data hash, threshold and the rule.
A bundle whose scoring cannot be one graph is refused in one line (never a partial graph).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import asdict
from pathlib import Path

import onnx
import torch

from aeops.errors import DataError
from aeops.io import atomic_path
from aeops.scoring.bundle import ModelBundle
from aeops.scoring.graph import ScoringGraph, unsupported

FILE = "model.onnx"
OPSET = 18


def export_onnx(bundle_dir: str | Path, out_dir: str | Path, *, name: str | None = None,
                version: str | None = None) -> Path:
    """Write `out_dir/model.onnx` (a dynamic batch axis) and return its path; `name`/`version`: the registered
    model it came from, recorded in the metadata."""
    bundle = ModelBundle.load(bundle_dir)
    why = unsupported(bundle)
    if why is not None:
        raise DataError(f"{bundle_dir}: cannot be exported as one ONNX graph: {why}; serve the MLflow model instead")
    graph = ScoringGraph(bundle).eval()
    n = 2
    if graph.image_shape:
        example: tuple[torch.Tensor, ...] = (torch.rand(n, bundle.n_features, dtype=torch.float32),)
    else:
        example = tuple(torch.rand(n, dtype=torch.float64) for _ in graph.input_names)
    batch = torch.export.Dim("batch", min=1)
    path = Path(out_dir) / FILE
    with atomic_path(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(  # forward(*columns) takes one tuple argument: dynamic_shapes is nested once
            graph, example, input_names=graph.input_names, output_names=graph.output_names,
            dynamic_shapes=(tuple({0: batch} for _ in example),), dynamo=True, external_data=False, verbose=False,
            opset_version=OPSET,
        )
        model = program.model_proto
        _describe(model, bundle, name=name, version=version)
        onnx.save_model(model, str(tmp))
    return path


def registered_as(bundle_dir: str | Path, record: str | Path) -> tuple[str | None, str | None]:
    """(name, version) of the registered model in `record` (register's output file) where it holds this bundle's
    training run, else (None, None): a bundle folder does not know whether it was registered."""
    from aeops.io import read_json
    from aeops.scoring.bundle import bundle_run_id

    path = Path(record)
    if not path.is_file():
        return None, None
    rec = read_json(path)
    if rec.get("run_id") is None or rec.get("run_id") != bundle_run_id(bundle_dir):
        return None, None
    return str(rec["name"]), str(rec["version"])


def _describe(model: onnx.ModelProto, bundle: ModelBundle, *, name: str | None, version: str | None) -> None:
    rule = bundle.scoring
    assert rule is not None
    props = {
        "aeops.model_name": name or "",
        "aeops.model_version": version or "",
        "aeops.data_hash": bundle.data_hash,
        "aeops.run_id": bundle.run_id or "",
        "aeops.threshold": repr(float(rule.threshold)),
        "aeops.scoring_rule": json.dumps({k: v for k, v in asdict(rule).items() if k not in ("residual_scale", "fusion")}),
        "aeops.inputs": "pixels: (n, pixels) float32 raw pixel values" if bundle.image_shape else
        "one (n,) float64 tensor per raw column, named as the column",
    }
    onnx.helper.set_model_props(model, props)
    model.doc_string = ("aeops anomaly scorer: raw rows in; anomaly_score, is_anomaly (score > threshold), "
                        "reconstruction_error, score_percentile, out_of_range, z out")
