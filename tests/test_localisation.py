"""Where an image is anomalous: masks in image folders, pixel AUROC and AUPRO, the pixel threshold, anomaly maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_train
from PIL import Image

from aeops.config import EvaluateConfig, PrepareConfig
from aeops.data.prepare import prepare
from aeops.data.prepared import load_split
from aeops.errors import ConfigError, DataError
from aeops.evaluation import pixels


def test_pixel_metrics_match_a_case_worked_by_hand():
    """One 1×6 image: regions {0} and {3, 4} (two regions, sizes 1 and 2), normal pixels 0.8, 0.2, 0.1.
    Descending: 0.9 (R1: PRO 1/2), 0.8 (normal: FPR 1/3), 0.7 and 0.4 (R2: PRO 3/4, 1), 0.2, 0.1. The PRO
    curve is 1/2 on FPR [0, 1/3), so AUPRO to 0.3 is 0.15 / 0.3 = 0.5; to FPR 1: (1/2·1/3 + 1·2/3) = 5/6.
    Pixel AUROC: of the 9 (defect, normal) pairs the defect pixel is higher in 7."""
    maps = np.array([[[0.9, 0.8, 0.2, 0.7, 0.4, 0.1]]])
    masks = np.array([[[1, 0, 0, 1, 1, 0]]], np.uint8)
    assert pixels.pixel_auroc(maps, masks) == pytest.approx(7 / 9)
    assert pixels.aupro(maps, masks) == pytest.approx(0.5)
    assert pixels.aupro(maps, masks, max_fpr=1.0) == pytest.approx(5 / 6)
    fpr, pro = pixels.pro_curve(maps, masks)
    assert np.allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1]) and np.allclose(pro, [0, .5, .5, .75, 1, 1, 1])
    # a region is counted once however large, and regions of different images are different regions
    two = np.zeros((2, 4, 4), np.uint8)
    two[0, :3, :3] = 1  # 9 pixels
    two[1, 0, 0] = 1  # 1 pixel, at the same place as the first one's corner
    assert pixels.regions(two).max() == 2
    found_big_only = np.where(two[0] > 0, 1.0, 0.0)[None].repeat(2, 0) * np.array([1.0, 0.0])[:, None, None]
    # the large region first (PRO 1/2 at FPR 0), then every other pixel ties at 0: one straight segment to (1, 1),
    # PRO 0.65 at FPR 0.3, so the area is 0.3 · (0.5 + 0.65) / 2 and AUPRO 0.575
    assert pixels.aupro(found_big_only, two) == pytest.approx(0.575)
    assert pixels.aupro(two.astype(float), two) == pytest.approx(1.0)  # a perfect map
    assert np.isnan(pixels.aupro(maps * 0, masks * 0)) and np.isnan(pixels.pixel_auroc(maps, masks * 0))


def test_pixel_threshold_is_a_percentile_of_normal_image_maxima():
    maps = np.zeros((100, 4, 4))
    maps[:, 1, 2] = np.arange(100)  # each image's peak
    assert pixels.pixel_threshold(maps, 95) == pytest.approx(np.percentile(np.arange(100), 95))
    assert (maps.reshape(100, -1).max(1) > pixels.pixel_threshold(maps, 95)).mean() == pytest.approx(0.05)


def _textures(root: Path, n_good: int = 60, n_test: int = 12, n_bad: int = 12, size: int = 16,
              seed: int = 0) -> None:
    """Smooth noise crops (at most 230); a defect is a white 4×4 square at a random place, its mask beside it."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)

    def crop() -> np.ndarray:
        return np.clip(100 + 400 * gaussian_filter(rng.normal(size=(size, size)), 1.5), 0, 230)

    for name, count in (("good", n_good), ("test_good", n_test)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(crop().astype(np.uint8)).save(root / name / f"{i:03d}.png")
    (root / "bad").mkdir()
    (root / "masks").mkdir()
    for i in range(n_bad):
        image, mask = crop(), np.zeros((size, size), np.uint8)
        top, left = rng.integers(2, size - 6, 2)
        image[top : top + 4, left : left + 4] = 255
        mask[top : top + 4, left : left + 4] = 255
        Image.fromarray(image.astype(np.uint8)).save(root / "bad" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}_mask.png")


def _cfg(root: Path, **kw) -> PrepareConfig:
    return PrepareConfig(**{"source": "image_folder", "path": str(root), "normal_classes": None, "normal_dir": "good",
                            "abnormal_dir": "bad", "mask_dir": "masks", "output_dir": str(root.parent / "prepared"),
                            **kw})


def test_masks_follow_their_images_through_the_split(tmp_path: Path):
    root = tmp_path / "imgs"
    _textures(root)
    prepare(_cfg(root, normal_test_dir="test_good"))
    out = tmp_path / "prepared"
    test = load_split(out, "test")
    assert test.masks is not None and test.masks.shape == (24, 16, 16) and test.masks.dtype == np.uint8
    assert set(np.unique(test.masks)) == {0, 1}
    defect = test.is_anomaly == 1
    assert defect.sum() == 12 and (test.masks[~defect] == 0).all()  # normal test images have empty masks
    assert (test.masks[defect].reshape(12, -1).sum(1) == 16).all()  # each 4x4 square
    # the masked pixels are the planted bright ones (the image and its mask were not separated by the split)
    bright = test.x.reshape(-1, 16, 16)[defect] > test.x.max() - 1e-6
    assert (bright <= test.masks[defect].astype(bool)).all() and bright.any()
    for name in ("train", "val"):  # normal_test_dir: train and val hold only normal_dir's images, no masks kept
        split = load_split(out, name)
        assert split.masks is None and split.is_anomaly.sum() == 0
    assert len(load_split(out, "train")) + len(load_split(out, "val")) == 60
    # resized with its image: nearest neighbour keeps the mask 0/1
    prepare(_cfg(root, normal_test_dir="test_good", image_size=[8, 8], output_dir=str(tmp_path / "small")))
    small = load_split(tmp_path / "small", "test").masks
    assert small.shape == (24, 8, 8) and set(np.unique(small)) == {0, 1}


@pytest.mark.parametrize("problem, message", [
    ("image without mask", "anomalous image without a mask"),
    ("mask without image", "mask has no image"),
    ("mask of a normal image", "mask names a normal image"),
    ("mask size", "mask is 16x12 pixels but its image 003.png is 16x16"),
    ("no mask folder", "folder not found (prepare.mask_dir)"),
])
def test_bad_masks_get_one_line_and_nothing_is_written(tmp_path: Path, problem: str, message: str):
    root = tmp_path / "imgs"
    _textures(root, n_good=20, n_test=0, n_bad=6)
    if problem == "image without mask":
        (root / "masks" / "002_mask.png").unlink()
    elif problem == "mask without image":
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / "099.png")
    elif problem == "mask of a normal image":
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / "000.png".replace("000", "010"))
        (root / "bad" / "010.png").unlink(missing_ok=True)
    elif problem == "mask size":
        Image.fromarray(np.zeros((12, 16), np.uint8)).save(root / "masks" / "003_mask.png")
    else:
        for p in (root / "masks").iterdir():
            p.unlink()
        (root / "masks").rmdir()
    with pytest.raises(DataError) as err:
        prepare(_cfg(root))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "prepared").exists()


def test_mask_and_normal_test_dirs_need_the_anomalib_layout():
    from aeops.config import parse_section

    for key in ("mask_dir", "normal_test_dir"):
        with pytest.raises(ConfigError, match=f"{key} needs normal_dir and abnormal_dir"):
            parse_section("prepare", {"source": "image_folder", "normal_classes": None, key: "m"})
        with pytest.raises(ConfigError, match=f"{key} applies only to source 'image_folder'"):
            parse_section("prepare", {"source": "digits", key: "m"})


def test_evaluate_localises_a_planted_defect_and_serves_its_map(workdir: Path, mlflow_cfg):
    """End to end on a small folder: evaluate adds pixel AUROC and AUPRO for the model and the per-pixel
    baseline, the bundle carries the pixel threshold, and the served map of a planted defect peaks inside it."""
    import pandas as pd

    from aeops.evaluation.evaluate import evaluate
    from aeops.scoring.bundle import ModelBundle
    from aeops.scoring.scorer import Scorer
    from aeops.training.train import train

    root = workdir / "imgs"
    _textures(root, n_good=160, n_test=16, n_bad=16)
    prepare(_cfg(root, normal_test_dir="test_good", output_dir="data/prepared"))
    cfg = tiny_train()
    cfg.max_epochs, cfg.patience, cfg.lr = 15, 15, 3e-3
    train(cfg, mlflow_cfg)
    record = evaluate(EvaluateConfig(isolation_forest_trees=10), mlflow_cfg)
    where = record["localisation"]
    assert where["regions"] == 16 and where["defect_images"] == 16
    print(json.dumps(where))
    assert where["model"]["pixel_auroc"] > 0.9 and where["model"]["aupro"] > 0.5, where
    report = next(Path(EvaluateConfig().report_dir).glob("*.html")).read_text()
    assert "Localisation on 16 test images with masks (16 defect regions)" in report
    assert "Anomaly maps of the 8 highest-scored test images" in report
    saved = json.loads(Path("metrics/evaluate.json").read_text())["localisation"]
    assert saved == json.loads(json.dumps(where))
    bundle = ModelBundle.load("bundle")
    assert bundle.scoring.pixel_threshold == pytest.approx(where["pixel_threshold"]) and where["pixel_threshold"] > 0

    test = load_split("data/prepared", "test")
    raw = bundle.preprocessor.unscale(test.x[test.is_anomaly == 1])
    scorer = Scorer(bundle)
    maps = scorer.score(pd.DataFrame(raw, columns=scorer.features), output="anomaly_map").to_numpy().reshape(-1, 16, 16)
    masks = test.masks[test.is_anomaly == 1].astype(bool)
    peaks = maps.reshape(len(maps), -1).argmax(1)
    inside = masks.reshape(len(masks), -1)[np.arange(len(masks)), peaks]
    assert inside.mean() >= 0.9, inside  # the map's peak lies in the planted square
    flagged = maps > bundle.scoring.pixel_threshold
    assert (flagged & masks).sum() > 0.5 * masks.sum() or where["mask_iou"] > 0.3, where


def test_synthetic_defects_change_only_their_masks_and_repeat_with_a_seed():
    import torch

    from aeops.models.discriminative import MASK_SHARE, plant_defects

    x = torch.rand(32, 3, 24, 20)
    same, none = plant_defects(x, share=0.0)
    assert torch.equal(same, x) and not none.any()
    planted, masks = plant_defects(x, share=1.0, gen=torch.Generator().manual_seed(0))
    assert masks.shape == (32, 1, 24, 20) and set(masks.unique().tolist()) == {0.0, 1.0}
    cover = masks.flatten(1).mean(1)
    assert (cover >= MASK_SHARE[0] - 0.01).all() and (cover <= MASK_SHARE[1] + 0.01).all()  # one blob set each
    outside = (masks == 0).expand_as(x)
    assert torch.equal(planted[outside], x[outside])  # only the masked pixels change
    assert (planted - x).abs()[~outside].mean() > 0.05
    again, masks2 = plant_defects(x, share=1.0, gen=torch.Generator().manual_seed(0))
    assert torch.equal(again, planted) and torch.equal(masks2, masks)


def test_a_discriminative_models_scored_residual_is_its_heads_defect_probability():
    """The scoring rule compares a row with `score_target`: its squared residual per pixel, in every channel, is
    the head's probability; the served anomaly map is that probability and the reconstruction stays the network's."""
    import torch

    from aeops.models.ensemble import reconstruct_members
    from aeops.models.factory import build_autoencoder
    from aeops.scoring.rule import RuleScorer, ScoringRule

    torch.manual_seed(0)
    cfg = {"variant": "discriminative", "architecture": "conv", "latent_dim": 4, "conv": {"channels": [4, 8]},
           "discriminative": {"head_channels": [4, 8]}}
    for members in (1, 2):
        model = build_autoencoder(cfg, 3 * 12 * 10, image_shape=(3, 12, 10), unit_interval=True, members=members).eval()
        x = torch.rand(5, 3 * 12 * 10)
        with torch.no_grad():
            targets = reconstruct_members(model, x)
            nets = model.members if members > 1 else [model]
            p = torch.stack([m.defect_probability(x) for m in nets]).mean(0)
            amap = RuleScorer(ScoringRule(threshold=1.0), image_shape=(3, 12, 10)).anomaly_map(x.numpy(), targets.numpy())
            recon = model.reconstruct(x)
        assert np.allclose(amap.reshape(5, 3, 12, 10), p.numpy()[:, None], atol=1e-6)
        assert not torch.allclose(targets[0], recon) and recon.shape == x.shape
        assert ((amap >= 0) & (amap <= 1)).all()
