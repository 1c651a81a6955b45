"""Faults drilled: a diverging loss, an unreachable tracking server, credentials in URLs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading

import yaml
from conftest import REPO
from warm import python

from aeops.tracking import mask_url


def _stage(workdir, stage: str, params: dict, **env_extra) -> tuple[subprocess.CompletedProcess, None]:
    (workdir / "params.yaml").write_text(yaml.safe_dump({"tune": {"enabled": False}} | params))  # a fixed model
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | env_extra
    proc = subprocess.run(
        [python(), str(REPO / "pipelines" / f"{stage}.py")], cwd=workdir, env=env,
        capture_output=True, text=True, timeout=300,
    )
    return proc, None


def test_nan_loss_stops_training_with_one_line_and_no_outputs(prepared, workdir):
    params = {"train": {"lr": 1e12, "max_epochs": 5, "accelerator": "cpu", "progress_bar": False}}
    proc, _ = _stage(workdir, "train", params)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    # checked at the end of each epoch: validation ends first, so its loss is the one named
    assert re.match(r"error: train: (train|val)/loss is (nan|inf) in epoch 0: training diverged", err), err
    assert "lower train.lr" in err
    assert not (workdir / "models" / "run.json").exists() and not (workdir / "metrics").exists()


def test_unreachable_tracking_server_fails_fast_naming_the_uri(prepared, workdir):
    """A server that drops every connection: the stage gives up after a bounded number of tries."""
    attempts = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        port = server.getsockname()[1]
        uri = f"http://127.0.0.1:{port}"

        def drop_all(stop: threading.Event) -> None:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                attempts.append(1)
                conn.close()

        stop = threading.Event()
        thread = threading.Thread(target=drop_all, args=(stop,), daemon=True)
        thread.start()
        params = {"train": {"max_epochs": 1, "accelerator": "cpu", "progress_bar": False}}
        proc, _ = _stage(workdir, "train", params, MLFLOW_TRACKING_URI=uri)
        stop.set()
        thread.join()
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: MLflow tracking server {uri} is unreachable")
    # MLFLOW_HTTP_REQUEST_MAX_RETRIES=2 (aeops' default): one request, at most 3 tries, no minutes of back-off
    assert 1 <= len(attempts) <= 3, len(attempts)


def test_passwords_are_masked():
    assert mask_url("postgresql://bob:s3cret@db:5432/optuna") == "postgresql://bob:***@db:5432/optuna"
    assert mask_url("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    assert mask_url("http://user@host:5000") == "http://user@host:5000"


def test_cli_turns_library_errors_into_one_line(workdir, capsys):
    from aeops.cli import main

    (workdir / "params.yaml").write_text("register: {}\n")
    (workdir / "in.csv").write_text("a,b\n1,2\n")
    assert main(["export", "--model", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--model nope: expected models:/" in err and "\n" not in err
    assert main(["score", "in.csv", "out.parquet"]) == 2  # no registered model yet
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's own INFO lines
    assert err.startswith("error: ") and "aeops-autoencoder@production not found" in err and "make promote" in err
    assert not (workdir / "out.parquet").exists()
