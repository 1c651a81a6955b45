"""Wait for a local server (MLflow's scoring or tracking server) to answer."""

from __future__ import annotations

import subprocess
import time
import urllib.request

from aeops.errors import AeopsError


def wait_until_up(url: str, process: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    """Poll `url` until it answers 2xx; fail early if `process` exits, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AeopsError(f"server for {url} exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AeopsError(f"{url} did not answer within {timeout:.0f} s")
