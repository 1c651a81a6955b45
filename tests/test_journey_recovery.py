"""Default journey, leg 4: the tracking store lost (`rm mlflow.db`): one recovery command, and it works."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from journey import Project, leg, ran_all

pytestmark = pytest.mark.slow
RECOVER = "dvc repro -f --downstream train"


@pytest.fixture(scope="module")
def p(tmp_path_factory) -> Iterator[Project]:
    yield from leg(tmp_path_factory, "recovery")


def test_a_lost_store_names_one_recovery_command(p: Project):
    (p.root / "mlflow.db").unlink()
    lost = p.run("make promote", ok=False)
    assert lost.returncode == 2 and f"train into this store again with `{RECOVER}`" in lost.stderr, lost.stderr


def test_the_recovery_command_trains_into_the_store_again(p: Project):
    out = p.run(RECOVER).stdout
    assert "Running stage 'train'" in out and "Running stage 'register'" in out and "Running stage 'tune'" not in out
    p.run("make promote")
    assert p.alias("production") == "1"


def test_this_leg_ran_its_readme_commands(p: Project):
    ran_all(p, "recovery")
