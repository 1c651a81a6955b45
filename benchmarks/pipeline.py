"""Benchmark: wall time of the default `dvc repro` from a clean state, per stage, and of a no-op repro.

Copies the repo's tracked files into a temporary git repo (no outputs, no DVC cache, no MLflow
store), runs each stage in pipeline order with `dvc repro -s`, then a full `dvc repro` that has
nothing to do. Usage: python benchmarks/pipeline.py
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "tune", "train", "evaluate", "register")


def run(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        for rel in filter(None, files.split("\0")):
            if rel != "dvc.lock" and not rel.startswith("metrics/"):
                (repo / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, repo / rel)
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"]):
            run(cmd, repo, env)
        seconds = {stage: round(run(["dvc", "repro", "-s", stage], repo, env), 1) for stage in STAGES}
        noop = round(min(run(["dvc", "repro"], repo, env) for _ in range(3)), 2)
    total = round(sum(seconds.values()), 1)
    from aeops.io import write_json

    write_json(ROOT / "benchmarks" / "results" / "pipeline.json", {
        "benchmark": "pipeline", "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "stage_seconds": seconds, "total_seconds": total, "noop_repro_seconds": noop,
    })
    print("| stage | " + " | ".join(STAGES) + " | total | no-op `dvc repro` |")
    print("| --- " * (len(STAGES) + 3) + "|")
    print("| seconds | " + " | ".join(str(seconds[s]) for s in STAGES) + f" | {total} | {noop} |")


if __name__ == "__main__":
    main()
