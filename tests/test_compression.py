"""`aeops compress` / `decompress`: the latent prior, the range coder, the .aez file and the commands' refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_train
from PIL import Image

from aeops.cli import main
from aeops.compression.codec import SegmentCoder
from aeops.compression.container import write_header
from aeops.compression.folder import read_header
from aeops.compression.prior import fit_prior, symbol_table
from aeops.errors import DataError


def _codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Three kinds of latent: Gaussian, a ReLU's (an atom at 0) and heavy-tailed."""
    return np.c_[rng.normal(2, 3, n), np.maximum(rng.normal(size=n), 0), rng.laplace(size=n)]


def test_prior_codes_round_trip_and_the_error_trades_bits_for_distortion():
    rng = np.random.default_rng(0)
    prior = fit_prior(_codes(rng, 5000))  # no decoder metric: the transform is a rotation
    transform = np.asarray(prior["transform"])
    assert np.allclose(transform @ transform.T, np.eye(3))
    test = _codes(rng, 2000)
    sizes, errors = [], []
    for error in (0.05, 0.2, 1.0):
        table = symbol_table(prior, error)
        symbols, clipped = table.quantise(test)
        coder = SegmentCoder(table)
        words = coder.encode(symbols)
        assert clipped == 0 and (coder.decode(words, len(test)) == symbols).all()
        dist = np.linalg.norm(table.dequantise(symbols) - test, axis=1)
        assert (dist <= np.sqrt(3) * table.delta / 2 + 1e-9).all()  # at most half a bin away per coordinate
        if error < 0.5:  # bins fine against the spreads: uniform noise, Δ²/12 per coordinate, error² in all
            assert np.sqrt((dist**2).mean()) == pytest.approx(error, rel=0.1)
        sizes.append(words.size)
        errors.append(dist.mean())
    assert sizes[0] > sizes[1] > sizes[2] and errors[0] < errors[1] < errors[2]
    assert 2 < 32 * sizes[1] / test.size < 8  # bits per code at bins of 0.35 on spreads of 0.6 to 3
    far = test.copy()
    far[0, 0] = 1e6
    assert symbol_table(prior, 0.2).quantise(far)[1] >= 1  # far outside the training codes: clipped, counted
    with pytest.raises(DataError, match="must be > 0"):
        symbol_table(prior, 0.0)
    with pytest.raises(DataError, match="too fine"):
        symbol_table(prior, 1e-6)


def test_the_decoder_metric_evens_out_the_latents_scales():
    """A decoder that uses latent 0 at 100x the weight of latent 1: the prior's bins follow the image, not the code."""
    import torch

    from aeops.compression.prior import decoder_metric

    weight = torch.tensor([[100.0, 0.0], [0.0, 1.0]])
    decode = lambda z: z @ weight  # noqa: E731  (two output pixels)
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(2000, 2))
    metric = decoder_metric(decode, codes, np.ones(2))
    assert np.allclose(metric, np.diag([100.0**2, 1.0]) / 2)
    table = symbol_table(fit_prior(codes, metric), 0.5)
    symbols, _ = table.quantise(codes)
    image_error = (table.dequantise(symbols) - codes) @ weight.numpy()
    assert np.sqrt((image_error**2).sum(1).mean() / 2) == pytest.approx(0.5, rel=0.1)  # 0.5 gray levels RMS per pixel
    assert len(table.probabilities[0]) > 20 * len(table.probabilities[1])  # the sensitive latent gets finer bins


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny conv model on digits (all classes), evaluated: models/, bundle/ (with prior.json), params.yaml."""
    from aeops.config import EvaluateConfig, MlflowConfig, PrepareConfig
    from aeops.data.prepare import prepare
    from aeops.evaluation.evaluate import evaluate
    from aeops.training.train import train

    root, here = tmp_path_factory.mktemp("codec"), os.getcwd()
    os.chdir(root)
    try:
        prepare(PrepareConfig(normal_classes=None))
        cfg = tiny_train(architecture="conv", latent_dim=8)
        cfg.max_epochs, cfg.patience, cfg.lr = 15, 15, 3e-3
        train(cfg, MlflowConfig(experiment="codec"))
        evaluate(EvaluateConfig(isolation_forest_trees=10), MlflowConfig(experiment="codec"))
        (root / "params.yaml").write_text("prepare: {}\n")
    finally:
        os.chdir(here)
    return root


def _digits(folder: Path, n: int, start: int = 0) -> np.ndarray:
    """scikit-learn digits (0–16) as 8-bit PNGs; returns the uint8 images."""
    from sklearn.datasets import load_digits

    images = np.rint(load_digits().images[start:start + n] * 255 / 16).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return images


def _aeops(root: Path, *args: str) -> int:
    return main([args[0], "--params", str(root / "params.yaml"), *args[1:]])


def test_folder_round_trip_keeps_names_and_sizes_and_decodes_what_the_network_reconstructs(model: Path, tmp_path,
                                                                                         capsys):
    import torch

    from aeops.scoring.bundle import ModelBundle
    from aeops.scoring.preprocess import apply_scaler, invert_scaler

    images = _digits(tmp_path / "in" / "a", 40)
    _digits(tmp_path / "in" / "b" / "deep", 3, start=100)
    Image.fromarray(np.kron(images[0], np.ones((2, 2), np.uint8))).save(tmp_path / "in" / "big.png")  # 16x16
    Image.fromarray(images[1]).save(tmp_path / "in" / "photo.jpg", quality=95)
    (tmp_path / "in" / "notes.txt").write_text("not an image")  # skipped, with a warning
    out = tmp_path / "x.aez"
    assert _aeops(model, "compress", str(tmp_path / "in"), str(out), "--model", str(model / "bundle"),
                  "--error", "0.5") == 0
    first = out.read_bytes()
    assert _aeops(model, "compress", str(tmp_path / "in"), str(out), "--model", str(model / "bundle"),
                  "--error", "0.5") == 0
    assert out.read_bytes() == first  # deterministic
    printed = capsys.readouterr()
    assert "45 images" in printed.out and "bits per pixel" in printed.out
    assert "skipped 1 file(s)" in printed.err
    assert len(first) < 45 * 64 / 2  # far below a byte per pixel
    assert _aeops(model, "decompress", str(out), str(tmp_path / "back"), "--model", str(model / "bundle")) == 0
    back = sorted(p.relative_to(tmp_path / "back").as_posix() for p in (tmp_path / "back").rglob("*.png"))
    assert back == sorted([f"a/{i:03d}.png" for i in range(40)] + [f"b/deep/{i:03d}.png" for i in range(3)]
                          + ["big.png", "photo.png"])
    assert Image.open(tmp_path / "back" / "big.png").size == (16, 16)  # the original size is restored
    # what the network itself reconstructs from the unquantised codes, in 8-bit pixels
    bundle = ModelBundle.load(model / "bundle")
    x = apply_scaler(bundle.scaler, images.reshape(40, -1).astype(np.float32) * 16 / 255)
    with torch.no_grad():
        recon = bundle.network().reconstruct(torch.from_numpy(x)).numpy()
    direct = np.clip(np.rint(invert_scaler(bundle.scaler, recon) * 255 / 16), 0, 255).reshape(40, 8, 8)
    decoded = np.stack([np.asarray(Image.open(tmp_path / "back" / "a" / f"{i:03d}.png")) for i in range(40)])
    assert np.abs(decoded.astype(int) - direct).mean() < 2  # a fine step: only the quantisation differs
    assert np.abs(decoded.astype(int) - images).mean() < 60  # and it is the digit, not noise


def test_refusals_name_the_problem_in_one_line(model: Path, tmp_path, capsys):
    import shutil

    _digits(tmp_path / "in", 5)
    out = tmp_path / "x.aez"
    assert _aeops(model, "compress", str(tmp_path / "in"), str(out), "--model", str(model / "bundle")) == 0
    other = tmp_path / "other_bundle"
    shutil.copytree(model / "bundle", other)
    prior = json.loads((other / "prior.json").read_text())
    prior["std"] = [s * 2 for s in prior["std"]]  # same network, another prior: the codes would decode wrong
    (other / "prior.json").write_text(json.dumps(prior))
    capsys.readouterr()
    cases = [
        (("decompress", str(out), str(tmp_path / "y"), "--model", str(other)), "compressed with a model bundle folder"),
        (("decompress", str(out), str(tmp_path / "y")), "pass that folder as --model"),
        (("decompress", str(tmp_path / "in" / "000.png"), str(tmp_path / "y"), "--model", str(other)),
         "not an aeops compressed file"),
        (("decompress", str(out), str(tmp_path / "in"), "--model", str(model / "bundle")), "is not an empty folder"),
        (("decompress", str(tmp_path / "no.aez"), str(tmp_path / "y")), "file not found"),
        (("compress", str(tmp_path / "nothing"), str(tmp_path / "z.aez"), "--model", str(model / "bundle")),
         "folder not found"),
        (("compress", str(tmp_path / "in"), str(tmp_path / "z.aez"), "--model", "bundle-typo"), "expected models:/"),
        (("compress", str(tmp_path / "in"), str(tmp_path / "z.aez")), "not found in the registry"),
        (("compress", str(tmp_path / "in"), str(tmp_path / "z.aez"), "--model", "models:/aeops-autoencoder"),
         "name a version or an alias"),
        (("compress", str(tmp_path / "in"), str(tmp_path), "--model", str(model / "bundle")), "is a folder"),
    ]
    for args, message in cases:
        assert _aeops(model, *args) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "y").exists() and not (tmp_path / "z.aez").exists()  # nothing half-written
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "in" / "000.jpg")
    assert _aeops(model, "compress", str(tmp_path / "in"), str(tmp_path / "z.aez"), "--model", str(model / "bundle")) == 2
    assert "would decompress to 000.png, as 000.jpg does" in capsys.readouterr().err
    (tmp_path / "in" / "000.jpg").unlink()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in" / "colour.png")
    assert _aeops(model, "compress", str(tmp_path / "in"), str(tmp_path / "z.aez"), "--model", str(model / "bundle")) == 2
    assert "colour image (RGB) but the model is grayscale" in capsys.readouterr().err
    data = out.read_bytes()
    flipped = bytearray(data)
    flipped[-5] ^= 0x10  # one bit of the codes: a range decoder would read it without complaint
    crafted = {k: v for k, v in read_header(out).items() if k != "format"}
    segments = data[12 + int.from_bytes(data[4:8], "little"):]
    for name, change in (("evil.aez", {"names": ["../evil.png", *crafted["names"][1:]]}),
                         ("coder.aez", {"coder": {**crafted["coder"], "recipe": -1}})):
        with open(tmp_path / name, "wb") as fh:
            write_header(fh, {**crafted, **change})
            fh.write(segments)
    for name, damaged, message in (("cut.aez", data[:-3], "truncated"), ("long.aez", data + b"x", "unexpected bytes"),
                                   ("head.aez", data[:12] + bytes(20) + data[32:], "damaged header"),
                                   ("bit.aez", bytes(flipped), "fail their checksum"),
                                   ("evil.aez", None, "unsafe or empty file name '../evil.png'"),
                                   ("coder.aez", None, "written with coder")):
        if damaged is not None:
            (tmp_path / name).write_bytes(damaged)
        assert _aeops(model, "decompress", str(tmp_path / name), str(tmp_path / "y"), "--model",
                      str(model / "bundle")) == 2
        assert message in capsys.readouterr().err, name
        assert not (tmp_path / "y").exists()
    with pytest.raises(SystemExit):  # argparse: exit 2 with the allowed range
        main(["compress", "a", "b", "--error", "0"])
    assert "not a number of gray levels in [0.01, 64]" in capsys.readouterr().err
