"""The journey tests' project: a copy of the repo where README commands run as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import readme
from conftest import REPO, SHARED

BIN = Path(sys.executable).parent
CAP = "epochs=2,trials=2,rows=1500"
MNIST = next(c for c in readme.runnable() if "prepare.source=mnist" in c)
TABLE = next(c for c in readme.runnable() if "prepare.source=table" in c)
IMAGES = next(c for c in readme.runnable() if "prepare.source=image_folder" in c)
COMPRESS = next(c for c in readme.runnable() if c.startswith("aeops compress"))
DECOMPRESS = next(c for c in readme.runnable() if c.startswith("aeops decompress"))
RESET = "git checkout params.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Project:
    """A copy of the repo where README commands run with the user's PATH and capped sizes."""

    def __init__(self, root: Path):
        self.root, self.background, self.timings = root, [], []
        self.serve_port, self.ui_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_", "AEOPS_"))}
        self.env = env | {
            "PATH": f"{BIN}{os.pathsep}{env['PATH']}", "AEOPS_CAP": CAP, "PORT": str(self.ui_port),
            "AEOPS_SERVE_PORT": str(self.serve_port), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
        }

    def run(self, command: str, ok: bool = True) -> subprocess.CompletedProcess:
        command = command.replace("127.0.0.1:5001", f"127.0.0.1:{self.serve_port}")
        start = time.perf_counter()
        proc = subprocess.run(["bash", "-c", command], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=600)
        self.timings.append((time.perf_counter() - start, command))
        if ok:
            assert proc.returncode == 0, f"{command} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def start(self, command: str, url: str) -> None:
        from aeops.serving.http import wait_until_up

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
    (dst / ".venv").symlink_to(BIN.parent)  # `make` finds its set-up done
    if SHARED.is_dir():
        (root / "shared").symlink_to(SHARED.parent)
    p = Project(dst)
    for cmd in ("git init -q", "git add -A", "git commit -qm init"):
        p.run(cmd)
    return p
