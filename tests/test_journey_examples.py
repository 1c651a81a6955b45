"""The README's data examples, a mixed-type table and MNIST: the table is promoted, MNIST's 784 columns may not replace it.

The image-folder example and compression: test_journey_images.py (a third file, so they run side by side).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import SHARED
from journey import EXPLAIN, FOLDER, MNIST, RESET, TABLE, Project, make_project

MNIST_CAP = "epochs=2,trials=2,rows=500"  # a conv model on 28x28 images: 500 rows of each split are plenty here
FLOOR = 0.6  # credit defaults are business outcomes, not planted anomalies (IsolationForest: 0.75; 2 capped epochs here)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SHARED.is_dir(), reason=f"MNIST and tabular sets expected in {SHARED}")]


@pytest.fixture(scope="module")
def p(tmp_path_factory) -> Project:
    project = make_project(tmp_path_factory.mktemp("examples"))
    yield project
    project.stop()


def test_the_mixed_table_example_encodes_its_columns_judges_the_knn_term_and_is_promoted(p: Project):
    p.run(RESET)
    done = p.run(TABLE)
    assert "column 'rownames' left out (identifier" in done.stderr  # R's row names: one warning, with the reason
    profile = json.loads((p.root / "data" / "prepared" / "profile.json").read_text())
    assert {k for k, v in profile["column_roles"].items() if v == "categorical"} == {"Home", "Marital", "Records", "Job"}
    best = json.loads((p.root / "tune" / "best_params.json").read_text())
    # 13 columns are 13 features (33 encoded inputs with the one-hot levels and 2 missing flags): the code
    # stays at half of them or below
    assert best["n_features"] == 33 and best["train"]["model"]["latent_dim"] <= 6
    metrics = json.loads((p.root / "metrics" / "evaluate.json").read_text())
    assert metrics["model"]["auroc"] > FLOOR and metrics["warnings"] == []
    assert "labelled anomalies" in metrics["model"]["score_choice"]  # auto judged the kNN term on validation
    p.run("make promote")
    assert p.alias("production") == "1"
    p.run("aeops sample rows.csv")
    p.run(EXPLAIN)  # why each row scored as it did: its top 3 features
    rows, why = pd.read_csv(p.root / "rows.csv"), pd.read_parquet(p.root / "explained.parquet")
    assert len(why) == len(rows) and {"Home", "Income"} <= set(rows.columns)
    columns = set(rows.columns) - {"rownames"}
    assert set(why[["explain_1_feature", "explain_2_feature", "explain_3_feature"]].to_numpy().ravel()) <= columns
    assert (why["explain_1_share"] >= why["explain_2_share"]).all() and (why["explain_1_share"] > 0).all()
    for i in range(len(rows)):  # the value named is the one sent (text: the model has categorical columns)
        sent, named = rows[why["explain_1_feature"].iloc[i]].iloc[i], why["explain_1_observed"].iloc[i]
        if pd.isna(sent):
            assert pd.isna(named)
        elif isinstance(sent, str):
            assert named == sent
        else:
            assert float(named) == pytest.approx(float(sent), rel=1e-5)


def test_the_parquet_folder_example_streams_the_table_through_the_pipeline(p: Project):
    """The README's data-lake example: the credit file as 3 Parquet files, more rows than prepare.max_rows."""
    credit = pd.read_csv(SHARED / "mixed" / "credit_data.csv")
    lake = p.root / "data" / "lake" / "credit"
    lake.mkdir(parents=True)
    step = -(-len(credit) // 3)
    for i in range(3):
        credit.iloc[i * step:(i + 1) * step].to_parquet(lake / f"part-{i:05d}.parquet", index=False)
    (lake / "_SUCCESS").write_text("")
    p.run(RESET)
    p.run(FOLDER)
    profile = json.loads((p.root / "data" / "prepared" / "profile.json").read_text())
    assert profile["test"]["streamed_from_rows"] == len(credit)  # the large-table path
    assert {k for k, v in profile["column_roles"].items() if v == "categorical"} == {"Home", "Marital", "Records", "Job"}
    assert profile["column_roles"]["rownames"] == "identifier"  # by its name, on a sample of the rows too
    sampled = profile["train"]["rows"] + profile["val"]["rows"] + profile["val_anomalies"]["rows"]
    assert abs(sampled - 2000) < 200 and 0.15 < profile["test"]["rows"] / len(credit) < 0.25
    metrics = json.loads((p.root / "metrics" / "evaluate.json").read_text())
    assert metrics["model"]["auroc"] > FLOOR


def test_compress_refuses_a_table_model(p: Project):
    from PIL import Image

    folder = p.root / "two-images"
    folder.mkdir()
    for i in range(2):
        Image.new("L", (8, 8), color=40 * i).save(folder / f"{i}.png")
    refused = p.run("aeops compress two-images x.aez", ok=False)  # production is the table model
    assert refused.returncode == 2 and "compression needs an image model" in refused.stderr, refused.stderr
    assert not (p.root / "x.aez").exists()


def test_the_mnist_example_trains_a_conv_model_on_capped_rows(p: Project):
    p.run(RESET)
    p.run(MNIST, cap=MNIST_CAP)
    metrics = json.loads((p.root / "metrics" / "evaluate.json").read_text())
    assert metrics["knn_distance"]["auroc"] > 0.5 and 0 <= metrics["model"]["auroc"] <= 1  # 2 capped epochs
    profile = json.loads((p.root / "data" / "prepared" / "profile.json").read_text())  # the smoke cap, in prepare
    assert profile["train"]["rows"] == profile["test"]["rows"] == 500 and profile["val"]["rows"] <= 500  # val: 0s
    run = p.last_run()
    assert run.data.tags["architecture"] == "conv" and run.data.params["train.model.latent_dim"] == "16"


def test_no_promotion_across_schemas(p: Project):
    for cmd in ("make promote", "aeops promote --force"):  # 784 pixel columns cannot replace the credit file's 13
        refused = p.run(cmd, ok=False)  # aeops exits 1; make reports a failed recipe as 2
        assert refused.returncode == (2 if cmd.startswith("make") else 1), refused.stderr[-500:]
        assert "not the same input schema" in refused.stderr, refused.stderr[-500:]
        assert "Traceback" not in refused.stderr
    assert p.alias("production") == "1"
