"""The run's offline HTML report, opened as users open it: in a real (headless) browser with no network."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import tiny_train

from aeops.config import EvaluateConfig
from aeops.evaluation.evaluate import evaluate, report_path
from aeops.scoring.bundle import ModelBundle
from aeops.training.train import train

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# no proxy reachable: any fetch the page tried would fail (the CSP forbids them anyway)
BROWSER = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9"]


@pytest.fixture
def report(prepared, mlflow_cfg):
    train(tiny_train(), mlflow_cfg)
    cfg = EvaluateConfig(isolation_forest_trees=20)
    evaluate(cfg, mlflow_cfg)
    return report_path(cfg, ModelBundle.load(cfg.bundle_dir).run_id).resolve()


def check_self_contained(report):
    html = report.read_text()
    assert "default-src 'none'" in html  # the page may fetch nothing: images are inline data
    assert not re.findall(r'(?:src|href)="(?!data:)[^"]*"', html)
    assert html.count("<table") == 3  # run header, model vs baselines, highest-scored rows
    for heading in ("Model vs baselines", "ROC and precision-recall", "threshold", "Highest-scored test rows",
                    "Reconstructions of the 8 highest-scored", "Latent space, anomalies ringed", "Loss curves"):
        assert heading in html, heading
    assert re.search(r"<td>knn_distance|<th>knn_distance", html) and "digits[0-8] vanilla-mlp z4" in html
    assert "top features (share of the score)" in html and re.search(r"<td>px_\d+ \d+%, px_\d+ \d+%, px_\d+ \d+%</td>", html)


def test_report_renders_in_a_browser_offline(report, tmp_path):
    """One trained model for both checks (a second test would train again): the file, then the browser."""
    from PIL import Image

    check_self_contained(report)
    if CHROMIUM is None:
        pytest.skip("chromium not installed (Debian package `chromium`; .ci/run installs it): file checks passed")
    dom = subprocess.run([*BROWSER, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom)  # set by the page once every image decoded
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(2)) == 8, loaded  # ROC, PR, histograms, 2 recon grids, anomaly maps, latent, loss
    shot = tmp_path / "report.png"
    subprocess.run([*BROWSER, "--window-size=1100,2400", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # plots and tables drawn, not a blank page
