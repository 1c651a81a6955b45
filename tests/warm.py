"""A warm start for the journeys' Python commands: one process imports the libraries, each command forks from it.

Most of a journey's time on 2 cores went to imports: every DVC stage and every `aeops` command is a fresh
interpreter that spends 4-8 CPU-s importing torch, Lightning, MLflow and scikit-learn before it does
anything (measured per stage with `python -X importtime`). Here one server per test process imports them
once; the journey's `.venv/bin/python` and `.venv/bin/aeops` are small shims that hand the command line,
working directory, environment and standard streams to the server, which forks a child to run it and sends
its exit status back. The command, its arguments and the code it runs are those of a cold start; only the
imports are shared (as with a fork server). Anything else (`python -c`, `python -m`, other flags, `aeops
serve`, an environment that import-time settings would see differently, no server) runs the real
interpreter, cold. `AEOPS_TEST_COLD=1` turns the warm start off for a whole run.

The child: its own session (a signal or kill reaches what it started), the caller's streams on fds 0-2,
cwd, environment and argv; the script run as `__main__`, then non-daemon threads joined, atexit
handlers run and streams flushed, as an interpreter's exit does. If the shim goes away (a test's timeout
killed it), the server kills the child's session.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import selectors
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

# What the commands import, read by a cold `python -X importtime pipelines/<stage>.py` and `aeops <command>`.
PRELOAD = [
    "torch", "lightning.pytorch", "mlflow", "mlflow.pyfunc", "mlflow.models", "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store", "sqlalchemy",
    "alembic", "optuna", "pandas", "pyarrow", "pyarrow.parquet", "sklearn.metrics", "sklearn.neighbors",
    "sklearn.ensemble", "scipy.stats", "matplotlib", "yaml", "pydantic",
    "tabulate",  # torch._dynamo imports it at exit
]
# Read when a library is imported or loaded (a child would see the server's values): a command whose value
# differs runs cold. Every PYTHON* variable is compared as well.
IMPORT_TIME = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "MPLBACKEND", "MPLCONFIGDIR",
               "VIRTUAL_ENV")
REAL = Path(sys.executable)
WARM = Path(f"/tmp/aeops-warm-{os.getuid()}-{hashlib.sha256(str(REAL).encode()).hexdigest()[:8]}")

SHIM = r'''#!{python} -IS
# A journey shim (tests/warm.py): run this command in a child of the warm server, or cold.
import json, os, signal, socket, sys
REAL, NAME = {python!r}, {name!r}
argv = sys.argv[1:]
def cold():
    os.execv(REAL, [REAL, *argv] if NAME == "python" else [REAL, {console!r}, *argv])
def server():
    """The socket of the nearest ancestor with a warm server (the test process that started this command)."""
    pid = os.getppid()
    while pid > 1:
        path = os.path.join({warm!r}, f"{{pid}}.sock")
        if os.path.exists(path):
            return path
        try:
            with open(f"/proc/{{pid}}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return None
path = None if os.environ.get("AEOPS_TEST_COLD") == "1" else server()
if not path:
    cold()
if NAME == "python":
    if not argv or argv[0].startswith("-") or not argv[0].endswith(".py") or not os.path.isfile(argv[0]):
        cold()
    cmd = {{"script": argv[0], "argv": argv}}
else:
    if argv[:1] == ["serve"]:
        cold()
    cmd = {{"script": {console!r}, "argv": [sys.argv[0], *argv]}}
cmd.update(cwd=os.getcwd(), env=dict(os.environ))
sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    sock.connect(path)
    socket.send_fds(sock, [json.dumps(cmd).encode()], [0, 1, 2])
    reply = json.loads(sock.recv(65536) or b"null")
except (OSError, ValueError):
    reply = None
if not reply or "pid" not in reply:
    sock.close()
    cold()
pid = reply["pid"]
def forward(sig, _frame):
    try:
        os.killpg(pid, sig)
    except OSError:
        pass
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, forward)
while True:
    try:
        done = sock.recv(65536)
        break
    except InterruptedError:
        continue
status = json.loads(done)["status"] if done else 255 << 8
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 255)
'''


def make_venv(dst: Path, venv: Path, socket_dir: Path) -> Path:
    """`dst`: a venv that links everything to `venv` but for shims named python, python3 and aeops."""
    if (dst / "READY").exists():
        return dst
    (dst / "bin").mkdir(parents=True, exist_ok=True)
    python = str(venv / "bin" / "python")
    for entry in venv.iterdir():
        if entry.name != "bin" and not (dst / entry.name).exists():
            (dst / entry.name).symlink_to(entry)
    for entry in (venv / "bin").iterdir():
        target = dst / "bin" / entry.name
        if target.exists() or target.is_symlink():
            continue
        if entry.name in ("python", "python3", "aeops"):
            name = "aeops" if entry.name == "aeops" else "python"
            target.write_text(SHIM.format(python=python, name=name, console=str(venv / "bin" / "aeops"),
                                          warm=str(socket_dir)))
            target.chmod(target.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR)
        else:
            target.symlink_to(entry)
    (dst / "READY").write_text(str(socket_dir))
    return dst


_server: list[Server] = []


def venv() -> Path:
    """The warm venv (made once per machine and venv), this test process's server started: a shim finds it as
    WARM/<pid>.sock of the nearest ancestor process that has one, i.e. the test process that ran the command."""
    from filelock import FileLock

    WARM.mkdir(exist_ok=True)
    with FileLock(str(WARM / "venv.lock")):
        made = make_venv(WARM / f"venv-{hashlib.sha256(SHIM.encode()).hexdigest()[:8]}", REAL.parent.parent, WARM)
    if not _server:
        _server.append(Server(WARM / f"{os.getpid()}.sock"))
        atexit.register(_server[0].stop)
    return made


def python(*, warm: bool = True) -> str:
    """The interpreter for a test's `python script.py` subprocess: warm, or the real one (`warm=False`: a test
    that SIGKILLs it, so that nothing outlives the kill)."""
    return str(venv() / "bin" / "python") if warm else str(REAL)


class Server:
    """The warm server of this test process (started on first use, stopped at exit)."""

    def __init__(self, path: Path):
        self.path = path
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_", "AEOPS_"))}
        self.proc = subprocess.Popen([sys.executable, __file__, "serve", str(path)], env=env,
                                     start_new_session=True, stdin=subprocess.DEVNULL)
        # no wait: until the socket appears (about 10 s of imports), the shims run their commands cold

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


# ----------------------------------------------------------------------------------------------- server side
def _declined(env: dict[str, str]) -> list[str]:
    """The import-time variables whose value in `env` differs from the server's."""
    keys = set(IMPORT_TIME) | {k for k in (*env, *os.environ) if k.startswith("PYTHON")}
    return sorted(k for k in keys if env.get(k) != os.environ.get(k))


def _child(cmd: dict, fds: list[int], others: list[int]) -> None:
    """In the forked child: become the command, run it, exit as the interpreter would."""
    code = 1
    try:
        os.setsid()
        for fd in others:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(cmd["cwd"])
        os.environ.clear()
        os.environ.update(cmd["env"])
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
        sys.argv = list(cmd["argv"])
        script = cmd["script"]  # as given: it is sys.argv[0]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        import numpy as np
        import torch

        np.random.seed()  # a cold process draws fresh seeds (`random` reseeds itself after a fork)
        torch.seed()
        import builtins
        import importlib.machinery
        import types

        path = os.path.abspath(script)  # a cold start's __file__ and code filename: absolute
        main = types.ModuleType("__main__")
        main.__dict__.update(__file__=path, __cached__=None, __builtins__=builtins, __spec__=None,
                             __loader__=importlib.machinery.SourceFileLoader("__main__", path))
        sys.modules["__main__"] = main
        try:
            with open(path, "rb") as f:
                source = f.read()
            exec(compile(source, path, "exec"), main.__dict__)
            code = 0
        except SystemExit as exit_:
            if exit_.code is None:
                code = 0
            elif isinstance(exit_.code, int):
                code = exit_.code
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            code = 130
        except BaseException as err:
            tb = err.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
                tb = tb.tb_next  # the traceback a cold start prints: from the script's own frames
            sys.excepthook(type(err), err.with_traceback(tb), tb)
            code = 1
        import atexit
        import threading

        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    finally:
        os._exit(code & 0xFF)


def serve(path: Path) -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import pkgutil

    import aeops

    for mod in pkgutil.walk_packages(aeops.__path__, "aeops."):
        if mod.name != "aeops.ui":  # MLflow's server app: only `mlflow ui` loads it
            importlib.import_module(mod.name)
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    listener.bind(str(tmp))
    listener.listen(64)
    os.replace(tmp, path)  # the path appears once the server accepts
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, ("accept", None, 0))
    jobs: dict[int, tuple[socket.socket, int]] = {}  # pid → (connection, pidfd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while os.getppid() == parent:
            for key, _ in sel.select(timeout=1.0):
                kind, conn, pid = key.data
                if kind == "accept":
                    _accept(listener, sel, jobs)
                elif kind == "exit":
                    _, status = os.waitpid(pid, 0)
                    _finish(sel, jobs, pid)
                    try:
                        conn.send(json.dumps({"status": status}).encode())
                    except OSError:
                        pass
                    conn.close()
                elif kind == "conn" and not conn.recv(16):  # the shim went away: so does its command
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
                    sel.unregister(conn)
    finally:
        for pid in jobs:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        path.unlink(missing_ok=True)


def _accept(listener: socket.socket, sel: selectors.BaseSelector, jobs: dict) -> None:
    conn, _ = listener.accept()
    try:
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        cmd = json.loads(msg)
    except (OSError, ValueError):
        conn.close()
        return
    declined = _declined(cmd["env"])
    if os.environ.get("WARM_RUNNER_LOG"):
        with open(os.environ["WARM_RUNNER_LOG"], "a") as log:
            print(json.dumps({"argv": cmd["argv"], "declined": declined}), file=log)
    if len(fds) != 3 or declined:
        for fd in fds:
            os.close(fd)
        conn.send(b"{}")
        conn.close()
        return
    others = [listener.fileno(), conn.fileno(), sel.fileno()]  # type: ignore[attr-defined]
    others += [c.fileno() for c, _ in jobs.values()] + [p for _, p in jobs.values()]
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        _child(cmd, fds, others)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    jobs[pid] = (conn, pidfd)
    sel.register(pidfd, selectors.EVENT_READ, ("exit", conn, pid))
    sel.register(conn, selectors.EVENT_READ, ("conn", conn, pid))
    conn.send(json.dumps({"pid": pid}).encode())


def _finish(sel: selectors.BaseSelector, jobs: dict, pid: int) -> None:
    conn, pidfd = jobs.pop(pid)
    sel.unregister(pidfd)
    os.close(pidfd)
    try:
        sel.unregister(conn)
    except KeyError:
        pass


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(Path(sys.argv[2]))
