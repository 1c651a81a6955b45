"""The journey tests' project: a copy of the repo where README commands run as a user runs them.

`make repro` runs once per test session (`repro_project`, shared by the xdist workers under a file
lock); each journey module then works in its own copy (`copy_project`), so the legs of the journey
run side by side and a failure names the leg and the step.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import readme
import warm
from conftest import REPO, SHARED
from filelock import FileLock

BIN = Path(sys.executable).parent
CAP = "epochs=2,trials=2,rows=1500"
MNIST = next(c for c in readme.runnable() if "prepare.source=mnist" in c)
TABLE = next(c for c in readme.runnable() if "prepare.source=table" in c)
FOLDER = next(c for c in readme.runnable() if "prepare.path=data/lake" in c)
EXPLAIN = next(c for c in readme.runnable() if "--explain" in c)
HEATMAPS = next(c for c in readme.runnable() if "--heatmaps" in c)
IMAGES = next(c for c in readme.runnable() if "prepare.source=image_folder" in c)
COMPRESS = next(c for c in readme.runnable() if c.startswith("aeops compress"))
DECOMPRESS = next(c for c in readme.runnable() if c.startswith("aeops decompress"))
RESET = "git checkout params.yaml"
CURL = "curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' -d @request.json"
# The default journey's README commands, by the module (leg) that runs them on its copy of one `make repro`.
LEGS = {
    "results": ["make repro", "make report", "dvc metrics show", "dvc plots show", "make compare", "make ui",
                "make help", "source .venv/bin/activate"],
    "serving": ["make promote", "make serve", "aeops sample request.json --rows 2", CURL, "aeops sample rows.csv",
                "aeops score rows.csv scores.parquet", HEATMAPS, "aeops export --format onnx", "aeops monitor rows.csv",
                "sed -i '/frozen: true/d' dvc.yaml", "dvc exp run -S monitor.path=rows.csv"],
    "experiments": ["dvc exp run -S train.max_epochs=3", "make promote ARGS=--rollback",
                    "dvc remote add -d storage ../dvc-store", "dvc push", "dvc pull",
                    "dvc exp run -S tune.enabled=false -S train.model.variant=sparse", "dvc exp show --only-changed"],
    "recovery": ["dvc repro -f --downstream train"],
}
BACKGROUND = {"make ui", "make serve"}  # commands that run until their leg ends


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Project:
    """A copy of the repo where README commands run with the user's PATH and capped sizes."""

    def __init__(self, root: Path):
        self.root, self.background, self.timings = root, [], []
        self.ran: list[str] = []  # every command run, as given (the README check reads it)
        self.serve_port, self.ui_port = _free_port(), _free_port()
        venv = warm.venv()  # first: it puts the warm server's socket in os.environ
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_", "AEOPS_"))}
        self.env = env | {
            "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "AEOPS_CAP": CAP, "PORT": str(self.ui_port),
            "AEOPS_SERVE_PORT": str(self.serve_port), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
        }

    def run(self, command: str, ok: bool = True, *, cap: str | None = None) -> subprocess.CompletedProcess:
        """Run a command line; `cap` replaces the project's AEOPS_CAP for this command only."""
        self.ran.append(command)
        command = command.replace("127.0.0.1:5001", f"127.0.0.1:{self.serve_port}")
        env = self.env if cap is None else self.env | {"AEOPS_CAP": cap}
        start = time.perf_counter()
        proc = subprocess.run(["bash", "-c", command], cwd=self.root, env=env, capture_output=True,
                              text=True, timeout=600)
        self.timings.append((time.perf_counter() - start, command))
        if ok:
            assert proc.returncode == 0, f"{command} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def start(self, command: str, url: str) -> None:
        from aeops.serving.http import wait_until_up

        self.ran.append(command)
        proc = subprocess.Popen(["bash", "-c", command], cwd=self.root, env=self.env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.background.append(proc)
        start = time.perf_counter()
        wait_until_up(url, proc, timeout=180)
        self.timings.append((time.perf_counter() - start, f"{command} (until up)"))

    def stop(self) -> None:
        """Stop the servers; print where the time went (`pytest -s`, or beside a failure)."""
        for seconds, command in sorted(self.timings, reverse=True)[:12]:
            print(f"{seconds:7.1f} s  {command}")
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(f"sqlite:///{self.root / 'mlflow.db'}")

    def last_run(self):
        info = json.loads((self.root / "models" / "run.json").read_text())
        return self.client().get_run(info["run_id"])

    def alias(self, name: str) -> str:
        return str(self.client().get_model_version_by_alias("aeops-autoencoder", name).version)


def make_project(root: Path) -> Project:
    """Tracked and untracked-not-ignored files, committed in a fresh git repo; the venv and shared/ linked."""
    dst = root / "aeops"
    stamp = BIN.parent / ".installed"  # the copy's `make` would reinstall into this shared venv, pointing it at the copy
    stale = [f for f in ("pyproject.toml", "constraints.txt") if stamp.exists() and (REPO / f).stat().st_mtime > stamp.stat().st_mtime]
    if stale:
        pytest.fail(f"{', '.join(stale)} changed since the venv was set up: run `make setup` (or `make test`) first")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file() and not rel.startswith(("dvc.lock", "metrics/")):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    (dst / ".venv").symlink_to(warm.venv())  # `make` finds its set-up done
    if SHARED.is_dir():
        (root / "shared").symlink_to(SHARED.parent)
    p = Project(dst)
    for cmd in ("git init -q", "git add -A", "git commit -qm init"):
        p.run(cmd)
    return p


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temp folder that every xdist worker sees (each worker's own basetemp is below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def repro_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one project after `make repro` (built by the first journey module that asks, once)."""
    root = _shared_root(tmp_path_factory) / "journey-base"
    with FileLock(str(root) + ".lock"):
        failed = root / "FAILED"
        if failed.is_file():
            pytest.fail(f"the shared `make repro` failed in another module:\n{failed.read_text()[-3000:]}")
        if not (root / "DONE").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            try:
                p = make_project(root)
                out = p.run("make repro").stdout
            except BaseException as err:
                failed.write_text(str(err))
                raise
            (root / "repro.log").write_text(out)
            (root / "DONE").write_text("")
    return root


def copy_project(base: Path, root: Path) -> Project:
    """A copy of the shared project in `root`, the absolute paths in its MLflow store moved there."""
    src, dst = base / "aeops", root / "aeops"
    shutil.copytree(src, dst, symlinks=True)
    if (base / "shared").is_symlink():
        (root / "shared").symlink_to(os.readlink(base / "shared"))
    old, new = str(src), str(dst)
    db = sqlite3.connect(dst / "mlflow.db")
    with db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for column in [row[1] for row in db.execute(f"PRAGMA table_info('{table}')")]:
                db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                           f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0', (old, new, old))
    db.close()
    for folder, _, files in os.walk(dst / "mlartifacts"):  # DVC's outs stay byte for byte (models/run.json names the base)
        for path in (Path(folder) / f for f in files if f.endswith((".json", ".yaml", "MLmodel"))):
            if old in (text := path.read_text(errors="ignore")):
                path.write_text(text.replace(old, new))
    p = Project(dst)
    p.ran.append("make repro")  # what the copy starts from
    return p


def leg(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Project]:
    """A module fixture's body: this leg's copy of the shared `make repro`, its servers stopped at the end."""
    project = copy_project(repro_project(tmp_path_factory), tmp_path_factory.mktemp(name))
    yield project
    project.stop()


def ran_all(p: Project, leg: str) -> None:
    """Each README command of this leg ran, as written (alone or at the start of a longer command line)."""
    missing = [c for c in LEGS[leg] if not any(r == c or r.startswith(c + " ") for r in p.ran)]
    assert not missing, f"this leg did not run: {missing}"
