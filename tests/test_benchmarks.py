"""The quality benchmark's pure helpers: JPEG rate measurement and the equal-rate comparison."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
from conftest import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quality():
    return _load("quality")


def _strokes(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = np.zeros((n, 28, 28))
    for img in x:
        r, c = rng.integers(4, 20, size=2)
        img[r : r + 8, c : c + 3] = 1.0
    return x.reshape(n, 784)


def test_tiled_jpeg_decodes_each_image_in_place_and_drops_header_cost(quality):
    x = _strokes(60)
    out = quality.jpeg_curve(x, qualities=(30, 95), per_row=7)
    tiled, single = out["mosaic"], out["per_image"]
    assert tiled[1]["psnr"] > 30  # a misplaced crop would give ~10 dB
    assert all(t["bits_per_pixel"] < s["bits_per_pixel"] / 2 for t, s in zip(tiled, single))
    assert tiled[0]["bits_per_pixel"] < tiled[1]["bits_per_pixel"] and tiled[0]["psnr"] < tiled[1]["psnr"]


def test_equal_rate_interpolates_in_log_rate_and_refuses_to_extrapolate(quality):
    jpeg = [{"bits_per_pixel": 0.5, "psnr": 20.0}, {"bits_per_pixel": 2.0, "psnr": 30.0}]
    points = [
        {"latent": z, "bits_per_pixel": bpp, "ae_quantized_psnr": 25.0, "pca_quantized_psnr": 22.0}
        for z, bpp in ((8, 1.0), (2, 0.1))
    ]
    inside, outside = quality.equal_rate(points, jpeg)
    assert inside["jpeg_psnr"] == pytest.approx(25.0)  # 1.0 is halfway between 0.5 and 2.0 in log rate
    assert outside["jpeg_psnr"] is None


def test_summary_renders_every_committed_result_and_names_missing_ones(tmp_path):
    summarize = _load("summarize")
    results = REPO / "benchmarks" / "results"
    for f in results.glob("*.json"):
        shutil.copy(f, tmp_path)
    (tmp_path / "serving.json").unlink()
    text = summarize.summarize(tmp_path)
    speed = json.loads((results / "training_speed.json").read_text())
    assert str(speed["models"]["mlp"]["lightning_over_raw"]) in text
    best = json.loads((results / "quality.json").read_text())["one_class"]
    assert f"**{best['variants'][best['best_variant']]['mean']:.4f}**" in text
    assert "## serving\n\nnot run" in text
