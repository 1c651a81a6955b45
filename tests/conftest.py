"""Shared fixtures: an isolated working directory with prepared digits data and its own MLflow store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from aeops.config import MlflowConfig, PrepareConfig, TrainConfig
from aeops.data.prepare import prepare

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def _restore(cwd: str, uri: str | None) -> None:
    os.chdir(cwd)
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(uri)
    if uri is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = uri


# `aeops` commands run in-process chdir into their project, and mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI.
# Without these two, a test or a module fixture would hand its folder or MLflow store to whatever runs next on the
# same worker (a registry lookup then finds another test's model).
@pytest.fixture(autouse=True, scope="module")
def _module_keeps_cwd_and_tracking_uri():
    before = os.getcwd(), os.environ.get("MLFLOW_TRACKING_URI")
    yield
    _restore(*before)


@pytest.fixture(autouse=True)
def _test_keeps_cwd_and_tracking_uri():
    before = os.getcwd(), os.environ.get("MLFLOW_TRACKING_URI")
    yield
    _restore(*before)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd = a fresh temp dir, so mlflow.db, mlartifacts/ and outputs land there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def prepared(workdir: Path) -> Path:
    """Digits with digit 9 as the anomaly class, prepared into workdir/data/prepared."""
    prepare(PrepareConfig(normal_classes=list(range(9))))
    return workdir / "data" / "prepared"


def tiny_train(**model: object) -> TrainConfig:
    """A few fast epochs of one network on CPU (plain epochs), no progress bar; the journeys run the defaults."""
    return TrainConfig(
        max_epochs=3, patience=2, batch_size=128, accelerator="cpu", progress_bar=False, ensemble=1, min_epoch_rows=0,
        model={"latent_dim": 4, "mlp": {"hidden": [32]}, "conv": {"channels": [4, 8]}, **model},
    )


@pytest.fixture
def mlflow_cfg() -> MlflowConfig:
    return MlflowConfig(experiment="aeops-test")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reverse", action="store_true", help="run the tests in reverse order (order independence)")


# File order under xdist (--dist loadfile, no reorder): longest first, so no worker is left with a long file at the end.
# xdist hands each worker two files at the start: the three queued behind the first three (minutes each) are tiny.
# test_journey_results.py builds the shared `make repro` the other default-journey legs copy (they wait for it).
FIRST = ("test_journey_examples.py", "test_journey_images.py", "test_journey_results.py",
         "test_architecture.py", "test_journeys.py", "test_dvc_deps.py",
         "test_journey_experiments.py", "test_journey_serving.py", "test_journey_recovery.py",
         "test_benchmarks.py", "test_postgres.py", "test_tune.py", "test_config.py", "test_fuzz.py",
         "test_train_evaluate.py", "test_images.py", "test_registry.py", "test_report.py", "test_faults.py",
         "test_ddp.py", "test_compression.py", "test_bad_input.py")  # then the rest, by name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--reverse"):
        items.reverse()
        return
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise
