"""The README's second journey: a table, then MNIST, and no promotion across their schemas (see test_journeys.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED
from journey import MNIST, RESET, TABLE, Project, make_project

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path):
    p = make_project(tmp_path)
    yield p
    p.stop()


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"MNIST and tabular sets expected in {SHARED}")
def test_table_and_mnist_examples_and_no_promotion_across_schemas(project: Project):
    p = project
    p.run(RESET)
    p.run(TABLE)
    best = json.loads((p.root / "tune" / "best_params.json").read_text())
    assert best["n_features"] == 9 and best["train"]["model"]["latent_dim"] < 9  # capped below the features
    metrics = json.loads((p.root / "metrics" / "evaluate.json").read_text())
    assert 0 <= metrics["model"]["auroc"] <= 1 and metrics["warnings"] == []
    p.run("make promote")
    assert p.alias("production") == "1"

    p.run(RESET)
    p.run(MNIST)
    metrics = json.loads((p.root / "metrics" / "evaluate.json").read_text())
    assert 0 <= metrics["model"]["auroc"] <= 1
    run = p.last_run()
    assert run.data.tags["architecture"] == "conv" and run.data.params["train.model.latent_dim"] == "16"
    for cmd in ("make promote", "aeops promote --force"):  # 784 columns cannot replace 9
        refused = p.run(cmd, ok=False)  # aeops exits 1; make reports a failed recipe as 2
        assert refused.returncode == (2 if cmd.startswith("make") else 1), refused.stderr[-500:]
        assert "not the same input schema" in refused.stderr, refused.stderr[-500:]
        assert "Traceback" not in refused.stderr
    assert p.alias("production") == "1"
