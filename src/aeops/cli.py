"""`aeops` console script: run a pipeline stage with the params of params.yaml.

Every stage validates its own params section first; a bad param or data file stops it with one
line on stderr (exit code 2) and nothing written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from aeops.config import load_params, parse_section
from aeops.errors import AeopsError


def _prepare(params: dict) -> None:
    from aeops.data.prepare import prepare

    cfg = parse_section("prepare", params.get("prepare"))
    profile = prepare(cfg)
    rows = ", ".join(f"{s} {profile[s]['rows']}" for s in ("train", "val", "test"))
    print(f"prepare: {cfg.source} → {cfg.output_dir} ({rows} rows)")


def _tune(params: dict) -> None:
    from aeops.tuning.study import tune

    cfg = parse_section("tune", params.get("tune"))
    result = tune(cfg, parse_section("mlflow", params.get("mlflow")))
    if result["enabled"]:
        model = result["train"]["model"]
        print(
            f"tune: best trial {result['trial']} {cfg.objective}={result['value']:.5f} "
            f"({model['variant']}/{model['architecture']}, latent {model['latent_dim']}); "
            f"trials {result['trials']}, {result['epochs_trained']} epochs → {cfg.output_dir}/best_params.json"
        )
    else:
        print(f"tune: disabled; train uses the fixed model config ({cfg.output_dir}/best_params.json)")


def _tune_worker(params: dict) -> None:
    from aeops.tuning.study import join

    cfg = parse_section("tune", params.get("tune"))
    n = join(cfg, parse_section("mlflow", params.get("mlflow")))
    print(f"tune worker: ran {n} trial(s) of study '{cfg.study_name}'")


def _train(params: dict) -> None:
    from aeops.training.train import train

    cfg = parse_section("train", params.get("train"))
    mlflow_cfg = parse_section("mlflow", params.get("mlflow"))
    metrics = train(cfg, mlflow_cfg)
    if metrics:
        print(
            f"train: {cfg.model.variant}/{cfg.model.architecture} test/loss {metrics['test/loss']:.5f} "
            f"after {metrics['epochs']} epochs ({metrics['fit_seconds']} s)"
        )


def _evaluate(params: dict) -> None:
    from aeops.evaluation.evaluate import evaluate

    cfg = parse_section("evaluate", params.get("evaluate"))
    results = evaluate(cfg, parse_section("mlflow", params.get("mlflow")))
    print(f"evaluate: metrics → {cfg.metrics_file}, plots → {cfg.plots_dir}")
    keys = ("recon_mse", "psnr", "auroc", "auprc", "f1", "knn_accuracy")
    print(f"  {'method':<17}" + "".join(f"{k:>14}" for k in keys))
    for method, values in results.items():
        cells = "".join(
            f"{values.get(k):>14.4f}" if values.get(k) is not None else f"{'-':>14}" for k in keys
        )
        print(f"  {method:<17}{cells}")


STAGES: dict[str, Callable[[dict], None]] = {
    "prepare": _prepare,
    "tune": _tune,
    "tune-worker": _tune_worker,
    "train": _train,
    "evaluate": _evaluate,
}


def run_stage(stage: str, params_file: str = "params.yaml") -> int:
    """Run one stage; turn aeops errors into one line on stderr and exit code 2."""
    try:
        STAGES[stage](load_params(params_file))
    except AeopsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aeops", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    return run_stage(args.stage, args.params)


if __name__ == "__main__":
    sys.exit(main())
