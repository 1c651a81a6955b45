"""`aeops serve`: MLflow's scoring app (behind aeops.serving.app's request bounds) under uvicorn, as
`mlflow models serve --env-manager local` runs it, on a model downloaded first."""

from __future__ import annotations

import errno
import os
import socket
import sys
import tempfile

from aeops.errors import AeopsError


def serve(model_uri: str, *, tracking_uri: str, host: str, port: int, workers: int) -> None:
    """Check the port, download the model, then replace this process by the server (does not return)."""
    from mlflow.pyfunc import scoring_server

    port_free(host, port)
    local = download_model(model_uri, tracking_uri)
    env = scoring_server.get_cmd(local, port, host, None, workers)[1] | {"MLFLOW_TRACKING_URI": tracking_uri}
    cmd = [sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port), "--workers", str(workers),
           "aeops.serving.app:app"]
    print(f"serve: {model_uri} on http://{host}:{port}/invocations ({workers} worker{'s' * (workers > 1)})", flush=True)
    os.execvpe(cmd[0], cmd, env)


def download_model(model_uri: str, tracking_uri: str) -> str:
    """The model's files in a new temporary folder (what `mlflow models serve` does before it starts)."""
    import mlflow

    return mlflow.artifacts.download_artifacts(artifact_uri=model_uri, tracking_uri=tracking_uri,
                                               dst_path=tempfile.mkdtemp(prefix="aeops-serve-"))


def port_free(host: str, port: int) -> None:
    """One line if another process listens on host:port (MLflow's server would print a traceback)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise AeopsError(f"cannot serve on {host}:{port}: another process listens there; pass --port N or set "
                             "AEOPS_SERVE_PORT") from None
        raise AeopsError(f"cannot serve on {host}:{port} ({err.strerror or err}): check --host") from None
