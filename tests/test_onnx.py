"""The exported ONNX graph scores raw rows as the served model does, for every scoring rule and both architectures.

Parity does not need a trained network: each case builds a bundle around a freshly initialised one (its own
seed) with a hand-set rule, and compares onnxruntime on `model.onnx` with `Scorer.score` (what the pyfunc
returns). The registered model's own export is checked in test_registry.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aeops.errors import DataError
from aeops.scoring.bundle import ModelBundle
from aeops.scoring.graph import gaussian_matrix
from aeops.scoring.profile import build_profile
from aeops.scoring.rule import ScoringRule
from aeops.scoring.scorer import Scorer
from aeops.serving.onnx_export import export_onnx
from tests.conftest import tiny_train

IMAGE = (1, 8, 8)


def _bundle(*, architecture: str = "mlp", variant: str = "vanilla", members: int = 1, rule: dict | None = None,
            knn: int = 0, seed: int = 0) -> tuple[ModelBundle, pd.DataFrame]:
    """A bundle of an untrained network on a 6-column table (or 8×8 images), and 200 raw rows to score."""
    from aeops.models.factory import build_autoencoder

    rng = np.random.default_rng(seed)
    image = architecture == "conv"
    d = int(np.prod(IMAGE)) if image else 6
    names = [f"px_{j}" for j in range(d)] if image else [f"f{j}" for j in range(d)]
    raw = rng.random((400, d)) * 255 if image else rng.normal(50, 10, (400, d)) * np.linspace(1, 1e3, d)
    offset, scale = (np.zeros(d), np.full(d, 255.0)) if image else (raw.mean(0), raw.std(0))
    scaler = {"kind": "global_minmax" if image else "standard", "feature_names": names, "offset": offset.tolist(),
              "scale": scale.tolist(), "train_min": raw.min(0).tolist(), "train_max": raw.max(0).tolist(),
              "ignored_features": []}
    cfg = tiny_train(architecture=architecture, variant=variant).model.model_dump()
    torch.manual_seed(seed)
    net = build_autoencoder(cfg, d, image_shape=IMAGE if image else None, unit_interval=image, members=members)
    scaled = ((raw - offset) / scale).astype(np.float32)
    fields = {"threshold": 0.0, "neighbors": knn, **(rule or {})}
    if knn:
        fields["fusion"] = [[0.5, 0.2], [1.5, 0.3]]
    profile = build_profile(names, raw, val_scores=rng.random(300), threshold=0.5, expected_flagged=0.05)
    bundle = ModelBundle(model_cfg=cfg, n_features=d, image_shape=list(IMAGE) if image else None, unit_interval=image,
                         state_dict=net.state_dict(), scaler=scaler, data_hash="md5:test", members=members,
                         scoring=ScoringRule(**fields), profile=profile.to_dict(),
                         reference=scaled[:150] if knn else None)
    rows = pd.DataFrame(raw[200:], columns=names)
    rows.iloc[:3] *= 3  # a few rows outside the training range
    scores = Scorer(bundle).score(rows)["anomaly_score"]
    threshold = float(np.median(scores))  # half the rows flagged: is_anomaly is compared on both sides
    return replace(bundle, scoring=replace(bundle.scoring, threshold=threshold)), rows  # type: ignore[type-var]


def _onnx(bundle: ModelBundle, tmp: Path, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    bundle.save(tmp / "bundle")
    path = export_onnx(tmp / "bundle", tmp / "onnx", name="aeops-test", version="3")
    session = ort.InferenceSession(str(path))
    if bundle.image_shape:
        feed = {"pixels": rows.to_numpy(np.float32)}
    else:
        feed = {c: rows[c].to_numpy(np.float64) for c in rows.columns}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed)))


CASES = {
    "plain": {},
    "variational": {"variant": "variational"},
    "scaled, top 1/3": {"rule": {"residual_scale": [list(np.linspace(0.5, 2, 6))], "top_fraction": 1 / 3}},
    "knn fusion, ensemble of 2": {"members": 2, "knn": 4, "rule": {"residual_scale": [[1.0] * 6, [2.0] * 6]}},
    "conv, smoothed, top 10 %": {"architecture": "conv", "rule": {"smoothing": 1.0, "top_fraction": 0.1}},
    "conv ensemble, scaled, knn": {"architecture": "conv", "members": 2, "knn": 3,
                                   "rule": {"smoothing": 0.7, "residual_scale": [[1.0] * 64, [0.5] * 64]}},
    "discriminative": {"architecture": "conv", "variant": "discriminative", "rule": {"smoothing": 1.0}},
}


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_graph_scores_raw_rows_as_the_served_model(case, tmp_path):
    bundle, rows = _bundle(**CASES[case], seed=len(case))
    want = Scorer(bundle).score(rows)
    got = _onnx(bundle, tmp_path, rows)
    score = want["anomaly_score"].to_numpy()
    # relative 1e-5 of each score, or of the scores' spread where a fused score sits near 0
    tol = 1e-5 * np.maximum(np.abs(score), np.std(score))
    assert np.all(np.abs(got["anomaly_score"] - score) <= tol), case
    np.testing.assert_allclose(got["reconstruction_error"], want["reconstruction_error"], rtol=1e-5)
    away = np.abs(score - bundle.scoring.threshold) > 1e-4 * np.std(score)
    assert away.sum() > 150 and got["is_anomaly"].mean() == pytest.approx(0.5, abs=0.05)
    np.testing.assert_array_equal(got["is_anomaly"][away], want["is_anomaly"].to_numpy()[away])
    np.testing.assert_allclose(got["score_percentile"][away], want["score_percentile"].to_numpy()[away])
    np.testing.assert_array_equal(got["out_of_range"], want["out_of_range"].to_numpy())
    assert want["out_of_range"].iloc[:3].min() > 0
    z = want[[c for c in want.columns if c.startswith("z_")]].to_numpy()
    np.testing.assert_allclose(got["z"], z, rtol=1e-4, atol=1e-5)
    if bundle.image_shape:
        maps = Scorer(bundle).score(rows, output="anomaly_map").to_numpy()
        np.testing.assert_allclose(got["anomaly_map"], maps, rtol=1e-4, atol=1e-9 * maps.max())


def test_metadata_names_the_model_and_its_threshold(tmp_path):
    import onnx

    bundle, rows = _bundle()
    _onnx(bundle, tmp_path, rows)
    model = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["aeops.model_name"] == "aeops-test" and props["aeops.model_version"] == "3"
    assert props["aeops.data_hash"] == "md5:test" and float(props["aeops.threshold"]) == bundle.scoring.threshold
    assert [i.name for i in model.graph.input] == list(rows.columns)
    one = _onnx(bundle, tmp_path / "again", rows.head(1))  # the batch axis is dynamic down to one row
    assert one["anomaly_score"][0] == pytest.approx(Scorer(bundle).score(rows.head(1))["anomaly_score"][0], rel=1e-5)


def test_gaussian_matrix_is_scipys_filter():
    from scipy.ndimage import gaussian_filter

    img = np.random.default_rng(0).random((9, 7))
    for sigma in (0.5, 1.0, 2.5):
        got = gaussian_matrix(9, sigma) @ img @ gaussian_matrix(7, sigma).T
        np.testing.assert_allclose(got, gaussian_filter(img, sigma, mode="constant", truncate=3.0), atol=1e-12)


def test_a_bundle_without_a_rule_is_refused_whole(tmp_path):
    bundle, _ = _bundle()
    replace(bundle, scoring=None).save(tmp_path / "bundle")
    with pytest.raises(DataError, match="cannot be exported as one ONNX graph: it has no scoring rule"):
        export_onnx(tmp_path / "bundle", tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()
