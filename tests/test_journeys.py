"""Every command README.md shows is run, as written, by a journey test in a temporary copy of the repo.

Sizes are capped with one environment variable (`AEOPS_CAP`: epochs, trials, training and evaluated rows), never
with a different code path. The default journey is one `make repro` (tests/journey.py) and four legs that each
work on a copy of it, side by side: test_journey_results.py, _serving.py, _experiments.py, _recovery.py
(`LEGS` lists the README commands each runs, and each leg checks it ran them). The data examples: a table and
MNIST in test_journey_examples.py, an image folder and compression in test_journey_images.py.
"""

from __future__ import annotations

import re

import readme
from conftest import REPO
from journey import COMPRESS, DECOMPRESS, EXPLAIN, FOLDER, IMAGES, LEGS, MNIST, RESET, TABLE

# README commands that another file runs (it holds the command verbatim).
ELSEWHERE = {
    "make test": ".ci/run",  # CI runs the test command itself
    "torchrun --standalone --nproc-per-node 2 pipelines/train.py": "tests/test_ddp.py",
}
# README commands no test runs, and why (a known gap, said in the closing note).
NOT_RUN = {"make bench": "~7 h on 2 cores; tests/test_benchmarks.py covers the helpers and runs tabular.py capped"}
# Inline mentions that describe a command rather than tell the reader to run it.
DESCRIPTIVE = {
    "mlflow models serve --env-manager local": "how `aeops serve` starts MLflow's scoring app (uvicorn)",
    "aeops score --model URI IN OUT": "a synopsis of the score command run in the production block",
    "aeops serve --host": "an option of `make serve`",
    "mlflow ui --app-name aeops": "what `make ui` runs",
    "aeops serve --workers 2": "an option of `make serve` (tests/test_guards.py checks it reaches MLflow)",
    'make serve ARGS="--workers 2"': "the same option through make",
    "aeops monitor DATA [--model URI]": "a synopsis of the monitor command run in the monitoring block",
    "aeops compress IN_DIR OUT_FILE [--model URI|BUNDLE_DIR] [--error E]": "a synopsis of the compression block's command",
    "aeops decompress FILE OUT_DIR [--model]": "a synopsis of the compression block's second command",
}
def test_every_readme_command_is_run_by_a_test():
    run_here = {c for leg in LEGS.values() for c in leg} | {MNIST, TABLE, FOLDER, EXPLAIN, IMAGES, RESET, COMPRESS,
                                                           DECOMPRESS}
    documented = readme.runnable()
    missing = [c for c in documented if c not in run_here and c not in ELSEWHERE and c not in NOT_RUN]
    assert not missing, f"README commands no test runs: {missing}"
    stale = [c for c in run_here | set(ELSEWHERE) | set(NOT_RUN) if c not in documented]
    assert not stale, f"tests run commands README no longer shows: {stale}"
    for command, where in ELSEWHERE.items():
        assert command in (REPO / where).read_text(), f"{where} does not run {command!r}"
    for block in readme.blocks():
        assert block.needs is None or re.search(r"tests/test_\w+\.py", block.needs), block.needs
    undocumented = [c for c in readme.inline_commands() if c not in documented and c not in DESCRIPTIVE]
    assert not undocumented, f"inline README commands outside any ```bash block: {undocumented}"
    assert "make test" in (REPO / ".ci" / "run").read_text()
