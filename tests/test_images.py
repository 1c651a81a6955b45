"""Image folders (`prepare.source: image_folder`): layouts, modes and sizes, bad files, and MNIST as PNGs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, tiny_train
from PIL import Image

from aeops.config import EvaluateConfig, PrepareConfig
from aeops.data.prepare import prepare
from aeops.data.prepared import load_meta, load_split
from aeops.errors import ConfigError, DataError


def _write(folder: Path, images: np.ndarray, fmt: str = "png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:05d}.{fmt}")


def _blobs(rng: np.random.Generator, n: int, shape: tuple[int, ...], level: int) -> np.ndarray:
    return np.clip(rng.normal(level, 20, size=(n, *shape)), 0, 255).astype(np.uint8)


def _cfg(path: Path, **kw) -> PrepareConfig:
    return PrepareConfig(**{"source": "image_folder", "path": str(path), "output_dir": str(path.parent / "prepared"),
                            **kw})


def test_class_subfolders_of_colour_images_resized_and_named(tmp_path: Path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "imgs" / "good", _blobs(rng, 40, (12, 10, 3), 100))
    _write(tmp_path / "imgs" / "scratch", _blobs(rng, 10, (12, 10, 3), 200), "jpg")
    (tmp_path / "imgs" / "good" / "notes.txt").write_text("not an image")  # skipped, with a warning
    prepare(_cfg(tmp_path / "imgs", normal_classes=["good"], image_size=[8, 6]))
    meta = load_meta(tmp_path / "prepared")
    assert meta.image_shape == [3, 8, 6] and meta.n_features == 3 * 8 * 6
    test = load_split(tmp_path / "prepared", "test")
    assert test.is_anomaly.sum() > 0 and set(test.labels) <= {0, 1}  # 'scratch' (code 1) is the anomaly


def test_normal_and_abnormal_dirs_and_center_crop(tmp_path: Path):
    rng = np.random.default_rng(1)
    _write(tmp_path / "imgs" / "ok", _blobs(rng, 50, (20, 16), 80))
    _write(tmp_path / "imgs" / "bad", _blobs(rng, 12, (20, 16), 220))
    cfg = _cfg(tmp_path / "imgs", normal_classes=None, normal_dir="ok", abnormal_dir="bad",
               image_size=[16, 16], image_fit="center_crop")
    prepare(cfg)
    assert load_meta(tmp_path / "prepared").image_shape == [1, 16, 16]
    assert load_split(tmp_path / "prepared", "train").is_anomaly.sum() == 0


@pytest.mark.parametrize("problem, message", [
    ("empty", "no class subfolders"),
    ("unreadable", "not a readable image"),
    ("mixed_modes", "mixed modes"),
    ("mixed_sizes", "mixed sizes"),
])
def test_bad_folders_get_one_line_naming_the_file(tmp_path: Path, problem: str, message: str):
    rng = np.random.default_rng(2)
    root = tmp_path / "imgs"
    root.mkdir()
    if problem != "empty":
        _write(root / "0", _blobs(rng, 6, (8, 8), 50))
        _write(root / "1", _blobs(rng, 6, (8, 8), 150))
    if problem == "unreadable":
        (root / "1" / "broken.png").write_bytes(b"\x89PNG not really")
    if problem == "mixed_modes":
        _write(root / "1", _blobs(rng, 1, (8, 8, 3), 150))
    if problem == "mixed_sizes":
        Image.fromarray(_blobs(rng, 1, (9, 8), 1)[0]).save(root / "1" / "odd.png")
    with pytest.raises(DataError, match=message) as err:
        prepare(_cfg(root, normal_classes=[0]))
    assert "\n" not in str(err.value)
    if problem != "empty":
        assert str(root) in str(err.value)
    assert not (tmp_path / "prepared").exists()  # nothing half-written


def test_a_folder_is_decoded_to_disk_and_trained_from_a_batch_at_a_time(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """Bounded memory: prepare decodes one image at a time into uint8 .npy files (a DVC out), and the
    data module reads batches through the memory map. tracemalloc counts numpy's allocations, so holding
    the decoded folder (let alone the float copies the old path made) would show."""
    import pickle
    import tracemalloc

    from aeops.data import prepared as prepared_mod
    from aeops.data.prepared import PixelRows
    from aeops.training.datamodule import PreparedDataModule

    rng = np.random.default_rng(4)
    monkeypatch.setattr(prepared_mod, "CHUNK_BYTES", 1 << 16)  # the scaler's pass reads 64 kB at a time
    peaks = {}
    for n in (300, 1200):  # normal images; a quarter as many anomalies
        folder = tmp_path / f"imgs{n}"
        _write(folder / "a", rng.integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8))
        _write(folder / "b", rng.integers(0, 256, size=(n // 4, 64, 64, 3), dtype=np.uint8))
        cfg = _cfg(folder, normal_classes=["a"], scaling="standard", output_dir=str(tmp_path / f"prepared{n}"))
        if not peaks:
            prepare(cfg.model_copy(update={"output_dir": str(tmp_path / "warm-up"), "max_train_rows": 50}))  # imports
        tracemalloc.start()
        prepare(cfg)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    more_pixels = (1500 - 375) * 3 * 64 * 64  # what four times the folder adds as uint8 (8 times that as float64)
    # per image only its path stays in memory; what does not grow with the folder (the scaler's 4 × 12,288
    # numbers as JSON, one image, a chunk) is the same at both sizes
    assert peaks[1200] - peaks[300] < more_pixels / 10, peaks

    out = tmp_path / "prepared1200"
    pixels = np.load(out / "train.npy", mmap_mode="r")
    assert pixels.dtype == np.uint8 and pixels.shape[1:] == (3, 64, 64)
    lazy, whole = load_split(out, "train", lazy=True), load_split(out, "train")
    assert isinstance(lazy.x, PixelRows) and np.array_equal(lazy.x[[3, 1, 4]], whole.x[[3, 1, 4]])
    shipped = pickle.dumps(lazy.x)  # DataLoader workers and DDP spawn get the path, not the pixels
    assert len(shipped) < pixels.nbytes / 10 and np.array_equal(pickle.loads(shipped)[[7]], whole.x[[7]])
    assert abs(float(whole.x.mean())) < 1e-3  # standard scaling fitted chunk by chunk: centred
    dm = PreparedDataModule(str(out), batch_size=8)  # memory per batch: 8 images (and their float copies)
    dm.setup()
    assert isinstance(dm.splits["train"].x, PixelRows)
    tracemalloc.start()
    rows = sum(len(batch) for batch in dm.train_dataloader())
    peak_epoch = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rows == len(pixels)
    print(f"peak numpy/Python allocations: prepare of 375 images {peaks[300] / 1e6:.2f} MB, of 1,500 "
          f"{peaks[1200] / 1e6:.2f} MB (decoded: {1500 * 12288 / 1e6:.1f} MB); one epoch {peak_epoch / 1e6:.2f} MB")
    assert peak_epoch < pixels.nbytes / 3, peak_epoch  # a batch at a time, not the split


def test_evaluation_samples_a_split_too_large_to_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Above MAX_EVAL_VALUES a split becomes a seeded sample of rows (the same for every method), and says so."""
    from aeops.data import prepared as prepared_mod
    from aeops.data.prepared import sample_split
    from aeops.evaluation.evaluate import sampled_warnings

    rng = np.random.default_rng(5)
    _write(tmp_path / "imgs" / "0", _blobs(rng, 60, (6, 6), 50))
    _write(tmp_path / "imgs" / "1", _blobs(rng, 20, (6, 6), 200))
    prepare(_cfg(tmp_path / "imgs", normal_classes=[0]))
    full = load_split(tmp_path / "prepared", "test")
    monkeypatch.setattr(prepared_mod, "MAX_EVAL_VALUES", 36 * 10)
    (part, total), (again, _) = (sample_split(tmp_path / "prepared", "test", seed=1) for _ in range(2))
    assert len(part) == 10 and total == len(full) > 10 and np.array_equal(part.x, again.x)
    rows = [int(np.flatnonzero((full.x == row).all(axis=1))[0]) for row in part.x]
    assert rows == sorted(rows) and np.array_equal(full.labels[rows], part.labels)  # rows stay with their labels
    [line] = sampled_warnings({"test": (10, total), "train": (5, 5)})
    assert f"the test split has {total:,} rows" in line and "same seeded random 10" in line


def test_folder_settings_belong_to_image_folders():
    with pytest.raises(ConfigError, match="applies only to source 'image_folder'"):
        from aeops.config import parse_section

        parse_section("prepare", {"source": "digits", "image_size": [8, 8]})
    with pytest.raises(ConfigError, match="abnormal_dir"):
        from aeops.config import parse_section

        parse_section("prepare", {"source": "image_folder", "normal_classes": None, "normal_dir": "ok"})


def _idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"MNIST expected in {SHARED / 'mnist'}")
def test_mnist_as_png_folders_gives_the_idx_paths_auroc(workdir: Path, mlflow_cfg):
    """The same 2,000 training and 600 test images as IDX files and as PNG class folders: same AUROC."""
    from aeops.data.sources import IDX_FILES, IDX_IMAGES, IDX_LABELS, load_idx_dir
    from aeops.evaluation.evaluate import evaluate
    from aeops.training.train import train

    full = load_idx_dir(SHARED / "mnist")
    parts = {"train": (full.x[:2000], full.labels[:2000]), "test": (full.test.x[:600], full.test.labels[:600])}
    (workdir / "idx").mkdir()
    for name, (x, y) in parts.items():
        images, labels = IDX_FILES[name]
        _idx(workdir / "idx" / f"{images}.gz", x.reshape(-1, 28, 28), IDX_IMAGES)
        _idx(workdir / "idx" / f"{labels}.gz", y, IDX_LABELS)
        for digit in range(10):
            _write(workdir / "png" / name / str(digit), x[y == digit].reshape(-1, 28, 28).astype(np.uint8))
    aurocs = {}
    for source, path in (("mnist", "idx"), ("image_folder", "png")):
        out = f"prepared_{source}"
        prepare(PrepareConfig(source=source, path=str(workdir / path), normal_classes=[1], output_dir=out))
        cfg = tiny_train()  # ~190 training images of digit 1: enough epochs to learn them
        cfg.max_epochs, cfg.patience, cfg.lr = 30, 30, 3e-3
        cfg.data_dir, cfg.output_dir, cfg.metrics_file = out, f"models_{source}", f"metrics/train_{source}.json"
        train(cfg, mlflow_cfg)
        ev = EvaluateConfig(data_dir=out, model_dir=f"models_{source}", metrics_file=f"metrics/{source}.json",
                            plots_dir=f"plots_{source}", bundle_dir=f"bundle_{source}", isolation_forest_trees=10)
        aurocs[source] = evaluate(ev, mlflow_cfg)["model"]["auroc"]
        assert json.loads((workdir / out / "meta.json").read_text())["image_shape"] == [1, 28, 28]
    print(f"AUROC, digit 1 normal: IDX {aurocs['mnist']:.4f}, PNG folders {aurocs['image_folder']:.4f}")
    # PNG is lossless; the rows come in another order (by class folder), so the split and the model differ a little
    assert aurocs["mnist"] > 0.95 and aurocs["image_folder"] == pytest.approx(aurocs["mnist"], abs=0.01), aurocs


@pytest.mark.slow
def test_colour_conv_model_trains_serves_and_exports(workdir: Path, mlflow_cfg):
    """channels = 3 end to end: conv training, evaluate, the registered pyfunc and ONNX."""
    import mlflow
    import onnxruntime as ort

    from aeops.config import RegisterConfig
    from aeops.data.raw import raw_split
    from aeops.evaluation.evaluate import evaluate
    from aeops.registry.register import register
    from aeops.serving.onnx_export import export_onnx
    from aeops.training.train import train

    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, size=(1, 16, 16, 3))
    normal = np.clip(base + rng.normal(0, 10, size=(120, 16, 16, 3)), 0, 255).astype(np.uint8)
    odd = np.clip(255 - base + rng.normal(0, 10, size=(30, 16, 16, 3)), 0, 255).astype(np.uint8)
    _write(workdir / "imgs" / "ok", normal)
    _write(workdir / "imgs" / "odd", odd)
    prepare(PrepareConfig(source="image_folder", path="imgs", normal_classes=["ok"]))
    cfg = tiny_train(architecture="conv")
    cfg.max_epochs, cfg.patience, cfg.lr = 40, 40, 3e-3
    train(cfg, mlflow_cfg)
    results = evaluate(EvaluateConfig(isolation_forest_trees=10), mlflow_cfg)
    assert results["model"]["auroc"] > 0.9  # inverted colours are far from the normal image
    record = register(RegisterConfig(), mlflow_cfg)
    df, split = raw_split("data/prepared")
    assert list(df.columns[:2]) == ["c0_px_0", "c0_px_1"] and df.shape[1] == 3 * 16 * 16
    out = mlflow.pyfunc.load_model(record["model_uri"]).predict(df.astype("float32"))
    assert (out["anomaly_score"][split.is_anomaly == 1].min() > out["anomaly_score"][split.is_anomaly == 0].median())
    path = export_onnx("bundle", "exports/onnx")
    got = ort.InferenceSession(str(path)).run(["anomaly_score", "z"], {"pixels": df.head(4).to_numpy(np.float32)})
    np.testing.assert_allclose(got[0], out["anomaly_score"].head(4), rtol=1e-5)
    assert got[1].shape == (4, 4)
