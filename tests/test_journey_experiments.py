"""Default journey, leg 3: DVC experiments, promotion and rollback, a DVC remote."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from journey import Project, leg, ran_all

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def p(tmp_path_factory) -> Iterator[Project]:
    yield from leg(tmp_path_factory, "experiments")


def test_a_training_param_reruns_train_onwards_as_a_named_experiment(p: Project):
    p.run("make promote")  # version 1 in production, as after the serving leg
    out = p.run("dvc exp run -S train.max_epochs=3").stdout
    assert "Running stage 'train'" in out and "Running stage 'register'" in out
    assert "Running stage 'tune'" not in out and "Running stage 'prepare'" not in out
    assert p.alias("challenger") == "2"
    exp_name = p.last_run().data.tags["dvc_experiment"]  # DVC names the experiment; the run carries the name
    assert exp_name != "none (dvc repro)" and exp_name in p.run("dvc exp list").stdout


def test_promote_and_roll_back(p: Project):
    p.run("make promote")  # same capped config, deterministic: not worse
    assert p.alias("production") == "2"
    p.run("make promote ARGS=--rollback")
    assert (p.alias("production"), p.alias("previous")) == ("1", "2")


def test_dvc_push_and_pull_through_a_remote(p: Project):
    for cmd in ("dvc remote add -d storage ../dvc-store", "dvc push", "dvc pull"):
        p.run(cmd)
    assert any((p.root.parent / "dvc-store").rglob("*"))


def test_tune_disabled_trains_the_fixed_model_config(p: Project):
    out = p.run("dvc exp run -S tune.enabled=false -S train.model.variant=sparse")
    assert "Running stage 'tune'" in out.stdout and (p.root / "tune" / "plots").is_dir()
    run = p.last_run()
    assert run.data.tags["model_config_source"] == "train.model"
    assert run.data.tags["model_config_reason"] == "tune.enabled is false" and run.data.tags["variant"] == "sparse"
    assert "workspace" in p.run("dvc exp show --only-changed").stdout


def test_this_leg_ran_its_readme_commands(p: Project):
    ran_all(p, "experiments")
