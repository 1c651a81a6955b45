"""Default journey, leg 2: promotion, the REST server, batch scoring, ONNX export and monitoring."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from journey import CURL, HEATMAPS, Project, leg, ran_all

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def p(tmp_path_factory) -> Iterator[Project]:
    yield from leg(tmp_path_factory, "serving")


def test_serve_before_any_promotion_names_the_fix(p: Project):
    refused = p.run("aeops serve", ok=False)
    assert refused.returncode == 2 and "run `make promote` first" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_promote_then_serve_answers_a_rest_request(p: Project):
    p.run("make promote")
    assert p.alias("production") == "1"
    p.start("make serve", f"http://127.0.0.1:{p.serve_port}/ping")
    p.run("aeops sample request.json --rows 2")
    answer = json.loads(p.run(CURL).stdout)
    assert len(answer["predictions"]) == 2 and "anomaly_score" in answer["predictions"][0]


def test_score_writes_a_score_per_row(p: Project):
    p.run("aeops sample rows.csv")
    scored = p.run("aeops score rows.csv scores.parquet")
    rows = len((p.root / "rows.csv").read_text().splitlines()) - 1
    assert f"score: {rows} rows" in scored.stdout and "warning" not in scored.stderr


def test_score_draws_heatmaps_for_the_image_model(p: Project):
    """The README's heatmap example on the default (digits) model: a map and a mask per sampled row."""
    import pandas as pd
    from PIL import Image

    if not (p.root / "rows.csv").exists():
        p.run("aeops sample rows.csv")
    p.run(HEATMAPS)
    rows = len(pd.read_csv(p.root / "rows.csv"))
    assert len(pd.read_parquet(p.root / "maps.parquet")) == rows
    heat = p.root / "heatmaps"
    assert len(list(heat.glob("*_heatmap.png"))) == rows == len(list(heat.glob("*_mask.png")))
    assert np.asarray(Image.open(heat / "row0000000_heatmap.png")).shape == (8, 8, 3)
    masks = np.stack([np.asarray(Image.open(m)) for m in sorted(heat.glob("*_mask.png"))]).reshape(rows, -1)
    # each mask is the served anomaly map above the model's pixel threshold (evaluate's, carried in the bundle)
    p.run("aeops score rows.csv ../amap.parquet --output-mode anomaly_map")
    amap = pd.read_parquet(p.root.parent / "amap.parquet").to_numpy()
    from aeops.scoring.bundle import ModelBundle

    threshold = ModelBundle.load(p.root / "bundle").scoring.pixel_threshold
    assert threshold is not None and threshold > 0
    assert np.array_equal(masks, np.where(amap > threshold, 255, 0)), (masks.mean(), (amap > threshold).mean())


def test_export_writes_one_graph_that_scores_as_aeops_score(p: Project):
    import onnx
    import onnxruntime as ort
    import pandas as pd

    p.run("aeops export --format onnx")
    path = p.root / "exports" / "onnx" / "model.onnx"
    props = {m.key: m.value for m in onnx.load(str(path)).metadata_props}
    assert props["aeops.model_name"] == "aeops-autoencoder" and props["aeops.model_version"].isdigit()
    if not (p.root / "scores.parquet").exists():  # the scoring test's output, made here when it ran alone
        p.run("aeops sample rows.csv")
        p.run("aeops score rows.csv scores.parquet")
    rows, scored = pd.read_csv(p.root / "rows.csv"), pd.read_parquet(p.root / "scores.parquet")
    got = ort.InferenceSession(str(path)).run(["anomaly_score"], {"pixels": rows.to_numpy(np.float32)})[0]
    np.testing.assert_allclose(got, scored["anomaly_score"], rtol=1e-5)


def test_scaled_input_warns_and_dvc_outs_are_refused(p: Project):
    scaled = p.run("aeops score data/prepared/test.parquet ../scaled.parquet")  # the prepared split: scaled
    assert "raw units" in scaled.stderr
    refused = p.run("aeops score rows.csv models/scores.parquet", ok=False)
    assert refused.returncode == 2 and "DVC out 'models'" in refused.stderr
    assert "Data and pipelines are up to date" in p.run("dvc status").stdout  # user commands left DVC alone


def test_monitor_writes_a_verdict_on_the_served_model(p: Project):
    # rows.csv is the test split's head, digit 9 (the anomaly class) included: ok or drift
    checked = p.run("aeops monitor rows.csv", ok=False)
    assert checked.returncode in (0, 1) and "Traceback" not in checked.stderr, checked.stderr[-2000:]
    reports = sorted((p.root / "monitoring").glob("*.json"))
    verdict = json.loads(reports[-1].read_text())["verdict"]
    assert (verdict, checked.returncode) in (("ok", 0), ("drift", 1)) and f"monitor: {verdict}:" in checked.stdout
    assert json.loads(reports[-1].read_text())["model"]["version"] == p.alias("production")


def test_the_monitor_stage_runs_once_unfrozen(p: Project):
    assert "Running stage 'monitor'" not in p.run("dvc repro").stdout  # frozen: optional
    p.run("sed -i '/frozen: true/d' dvc.yaml")
    staged = p.run("dvc exp run -S monitor.path=rows.csv", ok=False)  # exit 1 on drift fails the stage
    assert "Running stage 'monitor'" in staged.stdout and "Running stage 'train'" not in staged.stdout
    assert len(list((p.root / "monitoring").glob("*.json"))) == 2 and "Traceback" not in staged.stderr


def test_this_leg_ran_its_readme_commands(p: Project):
    ran_all(p, "serving")
