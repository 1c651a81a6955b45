"""Scale-out on real engines: Optuna and the MLflow tracking server on PostgreSQL, two tune workers.

Starts a throw-away PostgreSQL on 127.0.0.1 (Debian's `postgresql` package; `.ci/run` installs it)
or uses AEOPS_TEST_POSTGRES_URL (a server URL such as postgresql://user:pw@host:5432, whose user
may create databases). Skipped, saying how to run it, where neither is available.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from conftest import REPO
from warm import python

from aeops.serving.http import wait_until_up
from aeops.tracking import mask_url

pytestmark = pytest.mark.slow
HOW = "install Debian's `postgresql` package (apt-get install postgresql) or set AEOPS_TEST_POSTGRES_URL"


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """Base URL of a PostgreSQL server (no database part)."""
    if url := os.environ.get("AEOPS_TEST_POSTGRES_URL"):
        yield url.rstrip("/")
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip(f"PostgreSQL not found: {HOW}")
    root = Path(tempfile.mkdtemp(prefix="aeops-pg-", dir="/tmp"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    subprocess.run(_as_postgres([initdb, "-D", str(data), "-U", "aeops", "-A", "trust"]), check=True,
                   capture_output=True)
    subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"), "start", "-o",
                                 f"-h 127.0.0.1 -p {port} -k {root}"]), check=True, capture_output=True)
    try:
        yield f"postgresql://aeops@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _create_db(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def test_tune_workers_share_a_postgres_study_tracked_by_an_mlflow_server(pg_server, prepared, workdir):
    # A password in the URL (ignored by the throw-away server's trust auth) must never be logged.
    optuna_url = _create_db(pg_server, "aeops_optuna").replace("://aeops@", "://aeops:s3cret@")
    mlflow_db = _create_db(pg_server, "aeops_mlflow")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", mlflow_db,
         "--default-artifact-root", (workdir / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),  # no GenAI job runner (huey) beside it
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", server)
        params = {
            "tune": {"n_trials": 4, "n_workers": 2, "max_epochs": 3, "pruner": "none", "progress_bar": False,
                     "study_name": "pg", "space": {"depth": 1, "width": 32, "batch_size": 128}},
            "mlflow": {"experiment": "pg"},
        }
        (workdir / "params.yaml").write_text(yaml.safe_dump(params))
        env = dict(os.environ, OPTUNA_STORAGE=optuna_url, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
        proc = subprocess.run([python(), str(REPO / "pipelines" / "tune.py")], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

        trials = optuna.load_study(study_name="pg", storage=optuna_url).get_trials()
        assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        assert len({t.user_attrs["worker_pid"] for t in trials}) == 2  # two worker processes

        client = mlflow.MlflowClient(f"http://127.0.0.1:{port}")
        runs = client.search_runs([client.get_experiment_by_name("pg").experiment_id])
        parent = [r for r in runs if r.data.tags.get("study") == "pg"]
        assert len(parent) == 1 and parent[0].data.params["tune.storage"] == mask_url(optuna_url)
        logged = str(parent[0].data.params) + str(parent[0].data.tags)
        assert "s3cret" not in logged and (":***@" in logged or "@" not in optuna_url.split("//")[1].split("/")[0])
        nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
        assert sorted(int(r.data.tags["trial"]) for r in nested) == list(range(4))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
