"""Lineage and naming helpers of the MLflow runs (no training)."""

from __future__ import annotations

import subprocess

import pytest

from aeops.config import TrainConfig
from aeops.tracking import effective_model, git_commit, run_name

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def test_git_commit_ignores_what_the_pipeline_writes(workdir):
    (workdir / "dvc.yaml").write_text("stages:\n  train:\n    cmd: x\n    outs: [models]\n"
                                      "    metrics:\n      - metrics/train.json:\n          cache: false\n")
    for name, text in {"dvc.lock": "a", "metrics/train.json": "{}", "src.py": "x = 1", ".gitignore": "/models\n"}.items():
        (workdir / name).parent.mkdir(exist_ok=True)
        (workdir / name).write_text(text)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run([*GIT, *cmd], cwd=workdir, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    # `dvc repro` rewrites dvc.lock, deletes a stage's metrics before running it, appends to .gitignore
    (workdir / "dvc.lock").write_text("b")
    (workdir / "metrics/train.json").unlink()
    (workdir / ".gitignore").write_text("/models\n/bundle\n")
    assert git_commit() == sha
    (workdir / "src.py").write_text("x = 2")  # a code change is not the pipeline's
    assert git_commit() == f"{sha}-dirty"
    # an out outside the project (git would refuse the pathspec) is skipped, not a reason to report clean
    (workdir / "dvc.yaml").write_text("stages:\n  s:\n    cmd: x\n    outs: [../elsewhere, 'a[1]*']\n")
    assert git_commit() == f"{sha}-dirty"


def test_promotion_notes_keep_the_description_within_mlflows_limit():
    from aeops.registry.promote import MAX_DESCRIPTION, _append_note

    text = "version story"
    for i in range(200):
        text = _append_note(text, f"Alias `production` set at t{i}: reason {i} (previous production: 1).")
    assert len(text) <= MAX_DESCRIPTION and text.startswith("version story")
    assert text.endswith("reason 199 (previous production: 1).") and "reason 0 " not in text


@pytest.mark.parametrize("prepare,expected", [
    ({"source": "digits", "normal_classes": list(range(9))}, "digits[0-8] sparse-conv z16 x3"),
    ({"source": "mnist", "normal_classes": [0]}, "mnist[0] sparse-conv z16 x3"),
    ({"source": "mnist", "normal_classes": [1, 7]}, "mnist[1,7] sparse-conv z16 x3"),
    ({"source": "table", "path": "../shared/datasets/tabular/breastw.csv"}, "breastw sparse-conv z16 x3"),
    ({"source": "digits", "normal_classes": None}, "digits sparse-conv z16 x3"),
])
def test_run_names_say_data_and_model(prepare, expected):
    assert run_name(prepare, {"variant": "sparse", "architecture": "conv", "latent_dim": 16}, 3) == expected


def test_effective_model_keeps_only_the_variant_and_architecture_in_use():
    model = TrainConfig(model={"variant": "sparse", "architecture": "conv"}).model.model_dump()
    kept = effective_model(model)
    assert {"sparse", "conv", "latent_dim", "variant"} <= set(kept)
    assert not {"mlp", "denoising", "contractive", "variational"} & set(kept)
