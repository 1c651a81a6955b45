"""The README's data examples: an image folder, a table, MNIST, and no promotion across schemas (see test_journeys.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED
from journey import COMPRESS, DECOMPRESS, IMAGES, MNIST, RESET, TABLE, Project, make_project

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path):
    p = make_project(tmp_path)
    yield p
    p.stop()


def _image_folder(root: Path) -> None:
    """data/images/good: 240 MNIST ones, data/images/defect: 40 sevens, as PNG files (the README's example)."""
    from PIL import Image

    from aeops.data.sources import load_idx_dir

    mnist = load_idx_dir(SHARED / "mnist")
    for name, digit, n in (("good", 1, 240), ("defect", 7, 40)):
        folder = root / "data" / "images" / name
        folder.mkdir(parents=True)
        for i, row in enumerate(mnist.x[mnist.labels == digit][:n]):
            Image.fromarray(row.reshape(28, 28).astype("uint8")).save(folder / f"{i:04d}.png")


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"MNIST and tabular sets expected in {SHARED}")
def test_table_mnist_and_image_folder_examples_and_no_promotion_across_schemas(project: Project):
    p = project
    p.run(RESET)
    p.run(TABLE)
    best = json.loads((p.root / "tune" / "best_params.json").read_text())
    assert best["n_features"] == 9 and best["train"]["model"]["latent_dim"] < 9  # capped below the features
    metrics = json.loads((p.root / "metrics" / "evaluate.json").read_text())
    assert metrics["model"]["auroc"] > 0.8 and metrics["warnings"] == []  # a floor: breast-w separates easily
    assert "labelled anomalies" in metrics["model"]["score_choice"]  # auto judged the kNN term on validation
    p.run("make promote")
    assert p.alias("production") == "1"

    p.run(RESET)
    p.run(MNIST)
    metrics = json.loads((p.root / "metrics" / "evaluate.json").read_text())
    assert 0 <= metrics["model"]["auroc"] <= 1
    assert any(w.startswith("the test split has 10,000 rows, capped by AEOPS_CAP rows=1500") for w in metrics["warnings"])
    run = p.last_run()
    assert run.data.tags["architecture"] == "conv" and run.data.params["train.model.latent_dim"] == "16"
    for cmd in ("make promote", "aeops promote --force"):  # 784 columns cannot replace 9
        refused = p.run(cmd, ok=False)  # aeops exits 1; make reports a failed recipe as 2
        assert refused.returncode == (2 if cmd.startswith("make") else 1), refused.stderr[-500:]
        assert "not the same input schema" in refused.stderr, refused.stderr[-500:]
        assert "Traceback" not in refused.stderr
    assert p.alias("production") == "1"

    _image_folder(p.root)
    p.run(RESET)
    p.run(IMAGES)  # 24x24 = 576 columns: production (the table's) stays
    meta = json.loads((p.root / "data" / "prepared" / "meta.json").read_text())
    assert meta["image_shape"] == [1, 24, 24] and p.last_run().data.tags["architecture"] == "conv"
    assert 0 <= json.loads((p.root / "metrics" / "evaluate.json").read_text())["model"]["auroc"] <= 1  # 2 capped epochs
    assert p.alias("production") == "1" and p.alias("challenger") == "3"

    refused = p.run("aeops compress data/images/good x.aez", ok=False)  # production is the table model
    assert refused.returncode == 2 and "compression needs an image model" in refused.stderr, refused.stderr
    out = p.run(COMPRESS).stdout
    assert "240 images" in out and "version 3" in out, out
    size = (p.root / "good.aez").stat().st_size
    assert size < 240 * 24 * 24 / 8  # under a bit per pixel, header included
    assert "version 3" in p.run(DECOMPRESS).stdout
    restored = sorted((p.root / "restored").glob("*.png"))
    assert [f.name for f in restored] == sorted(f.name for f in (p.root / "data" / "images" / "good").glob("*.png"))
    from PIL import Image

    assert Image.open(restored[0]).size == (28, 28)  # the originals' size, not the model's 24x24
