"""The journeys' warm start (tests/warm.py) runs a command as a cold interpreter would: same streams, exit
status, argv, cwd, environment and traceback; a signal to the shim reaches the command; cold where it must."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import warm

SCRIPT = """
import json, os, sys, time
print(json.dumps({"name": __name__, "argv": sys.argv, "cwd": os.getcwd(), "env": os.environ.get("PROBE"),
                  "path0": sys.path[0], "pid": os.getpid(), "ppid": os.getppid()}), flush=True)
print("to stderr", file=sys.stderr)
if sys.argv[1:] == ["sleep"]:
    time.sleep(60)
if sys.argv[1:] == ["raise"]:
    raise ValueError("boom")
sys.exit(int(sys.argv[1]) if sys.argv[1:] else 0)
"""


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    venv = warm.venv()
    server = warm._server[0]
    deadline = time.monotonic() + 120
    while not server.path.exists():  # the server's imports
        assert server.proc.poll() is None and time.monotonic() < deadline, "the warm server did not start"
        time.sleep(0.1)
    return {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "PROBE": "seen"}


def _run(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["python", "probe.py", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_warm_command_sees_what_a_cold_one_sees(env: dict, tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(SCRIPT)
    warm_run = _run(env, tmp_path, "3")
    cold_run = _run(env | {"AEOPS_TEST_COLD": "1"}, tmp_path, "3")
    seen = [json.loads(r.stdout) for r in (warm_run, cold_run)]
    assert seen[0].pop("ppid") == warm._server[0].proc.pid  # forked by the server
    assert seen[1].pop("ppid") == os.getpid()  # the real interpreter, exec'd by the shim
    for s in seen:
        s.pop("pid")
    assert seen[0] == seen[1] == {"name": "__main__", "argv": ["probe.py", "3"], "cwd": str(tmp_path),
                                  "env": "seen", "path0": str(tmp_path)}
    assert warm_run.returncode == cold_run.returncode == 3
    assert warm_run.stderr == cold_run.stderr == "to stderr\n"


def test_cold_where_an_import_time_setting_differs_or_the_form_is_not_a_script(env: dict, tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(SCRIPT)
    declined = _run(env | {"OMP_NUM_THREADS": "7"}, tmp_path)  # libgomp read the server's value when torch loaded
    assert declined.returncode == 0 and json.loads(declined.stdout)["ppid"] == os.getpid()
    inline = subprocess.run(["python", "-c", "import os; print(os.getppid())"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert int(inline.stdout) == os.getpid()


def test_a_traceback_starts_at_the_script(env: dict, tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(SCRIPT)
    warm_run, cold_run = _run(env, tmp_path, "raise"), _run(env | {"AEOPS_TEST_COLD": "1"}, tmp_path, "raise")
    assert warm_run.returncode == cold_run.returncode == 1
    assert warm_run.stderr == cold_run.stderr
    assert "warm.py" not in warm_run.stderr and "runpy" not in warm_run.stderr


def test_a_signal_to_the_shim_reaches_the_command(env: dict, tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(SCRIPT)
    proc = subprocess.Popen(["python", "probe.py", "sleep"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    child = json.loads(proc.stdout.readline())["pid"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists()


def test_a_killed_shim_takes_its_command_with_it(env: dict, tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(SCRIPT)
    proc = subprocess.Popen(["python", "probe.py", "sleep"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    child = json.loads(proc.stdout.readline())["pid"]
    proc.kill()  # what a test's timeout does
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists()
