"""Benchmark: scoring speed in process and over REST (`mlflow models serve`), and a load test.

Builds a model on digits in a temporary directory (prepare → train → evaluate → register →
promote), then measures: in-process pyfunc rows/s at batch 1,000; and for each server size
(`aeops serve --workers N`, default 1 and 2): sequential REST latency p50/p99 for 1 and 1,000 rows,
and 8 concurrent clients x 200 one-row requests (errors, p50/p99, req/s).
Usage: python benchmarks/serving.py [--requests 200] [--clients 8] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def build_model(ensemble: int | None = None) -> pd.DataFrame:
    from aeops.config import EvaluateConfig, MlflowConfig, PrepareConfig, RegisterConfig, TrainConfig
    from aeops.data.prepare import prepare
    from aeops.evaluation.evaluate import evaluate
    from aeops.registry.promote import promote
    from aeops.registry.register import raw_split, register
    from aeops.training.train import train

    mlflow_cfg = MlflowConfig(experiment="bench")
    prepare(PrepareConfig(normal_classes=list(range(9))))
    size = {} if ensemble is None else {"ensemble": ensemble}  # default: train.ensemble's default
    train(TrainConfig(max_epochs=10, patience=5, batch_size=128, accelerator="cpu", progress_bar=False, **size), mlflow_cfg)
    evaluate(EvaluateConfig(), mlflow_cfg)
    register(RegisterConfig(), mlflow_cfg)
    promote(RegisterConfig(), mlflow_cfg)
    return raw_split("data/prepared")[0]


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def post(port: int, body: bytes) -> tuple[int, float]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = -1
    return status, time.perf_counter() - start


def rest(workers: int, bodies: dict[int, bytes], clients: int, requests: int) -> dict:
    """Start `aeops serve --workers N`, measure sequential latency and the concurrent load, stop it."""
    from aeops.serving.http import wait_until_up

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "aeops.cli", "serve", "--port", str(port), "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    out: dict = {}
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server)
        for n, body in bodies.items():
            for _ in range(2 * workers):  # every worker warm
                post(port, body)
            lat = [post(port, body)[1] for _ in range(50)]
            out[f"rest_{n}_rows"] = percentiles(lat)
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda _: post(port, bodies[1]), range(clients * requests)))
        wall = time.perf_counter() - start
        out["load"] = {
            "clients": clients, "requests": len(results), "errors": sum(1 for status, _ in results if status != 200),
            **percentiles([t for _, t in results]), "requests_per_s": round(len(results) / wall, 1),
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per client in the load test")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server processes to measure")
    parser.add_argument("--ensemble", type=int, help="networks in the model (default: train.ensemble's default)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serving.json"))
    args = parser.parse_args()
    from aeops.config import TrainConfig

    report: dict = {"benchmark": "serving", "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        Path("params.yaml").write_text("register: {}\nmlflow: {experiment: bench}\n")
        df = build_model(args.ensemble)
        report["ensemble"] = args.ensemble or TrainConfig().ensemble
        import mlflow

        model = mlflow.pyfunc.load_model("models:/aeops-autoencoder@production")
        batch = pd.concat([df] * 3, ignore_index=True).head(1000)
        model.predict(batch)  # warm-up
        times = []
        for _ in range(20):
            start = time.perf_counter()
            model.predict(batch)
            times.append(time.perf_counter() - start)
        report["in_process_rows_per_s"] = round(1000 / float(np.median(times)))

        bodies = {n: json.dumps({"dataframe_split": batch.head(n).to_dict(orient="split")}).encode() for n in (1, 1000)}
        report["workers"] = {str(w): rest(w, bodies, args.clients, args.requests) for w in args.workers}
        first = report["workers"][str(args.workers[0])]  # the flat keys: one worker, as before
        report |= {k: first[k] for k in ("rest_1_rows", "rest_1000_rows", "load")}

    from aeops.io import write_json

    write_json(args.out, report)
    print("| measure | value |\n| --- | --- |")
    print(f"| in-process pyfunc, batch 1,000 | {report['in_process_rows_per_s']:,} rows/s |")
    for w, r in report["workers"].items():
        for n in (1, 1000):
            lat = r[f"rest_{n}_rows"]
            print(f"| {w} worker(s): REST /invocations, {n:,} row(s) | p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms |")
        ld = r["load"]
        print(f"| {w} worker(s): load, {ld['clients']} clients x {args.requests} one-row requests | {ld['errors']} errors, "
              f"p50 {ld['p50_ms']} ms, p99 {ld['p99_ms']} ms, {ld['requests_per_s']} req/s |")


if __name__ == "__main__":
    main()
