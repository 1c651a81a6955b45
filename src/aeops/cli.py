"""`aeops` console script: pipeline stages, promotion, serving, batch scoring, reports and ONNX export.

Every command validates its params sections first; a user mistake (bad param, data file, missing
model) stops it with one line on stderr (exit code 2) and nothing written; a refused promotion
and a drifted batch (`monitor`) exit with code 1. Anything else is a bug and keeps its traceback; `AEOPS_DEBUG=1` shows the
traceback of the one-line errors too. The project root is the folder of the params file.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from aeops.config import load_params, parse_section
from aeops.errors import AeopsError, DataError, PromotionRefused
from aeops.paths import refuse_dvc_out
from aeops.quiet import quiet
from aeops.scoring.reference import ModelRef, registered


def _section(params: dict, name: str):
    return parse_section(name, params.get(name))


def _prepare(params: dict, args: argparse.Namespace) -> None:
    from aeops.data.prepare import prepare

    cfg = _section(params, "prepare")
    profile = prepare(cfg)
    rows = ", ".join(f"{s} {profile[s]['rows']}" for s in ("train", "val", "test"))
    print(f"prepare: {cfg.source} → {cfg.output_dir} ({rows} rows)")


def _tune(params: dict, args: argparse.Namespace) -> None:
    from aeops.tuning.study import tune

    cfg = _section(params, "tune")
    result = tune(cfg, _section(params, "mlflow"))
    print(tune_line(result, cfg.output_dir))


def tune_line(result: dict, output_dir: str) -> str:
    """The tune stage's summary line. AUROC objectives are minimised as 1 − AUROC: the line names that
    metric and shows the AUROC too (a bare "val_auroc=0.00000" reads as the worst model, not the best)."""
    if not result["enabled"]:
        return f"tune: disabled; train uses the fixed model config ({output_dir}/best_params.json)"
    from aeops.tuning.objectives import OBJECTIVE_METRIC

    metric, model = OBJECTIVE_METRIC[result["objective"]], result["train"]["model"]
    value = f"{result['objective']}: {metric}={result['value']:.5f}"
    if metric.endswith("auroc_loss"):
        value += f" (validation AUROC {1 - result['value']:.4f})"
    return (f"tune: best trial {result['trial']} ({model['variant']}/{model['architecture']}, latent "
            f"{model['latent_dim']}), {value}; trials {result['trials']}, {result['epochs_trained']} epochs → "
            f"{output_dir}/best_params.json")


def _tune_worker(params: dict, args: argparse.Namespace) -> None:
    from aeops.tuning.workers import join

    cfg = _section(params, "tune")
    n = join(cfg, _section(params, "mlflow"))
    print(f"tune worker: ran {n} trial(s) of study '{cfg.study_name}'")


def _train(params: dict, args: argparse.Namespace) -> None:
    from aeops.training.train import train

    cfg = _section(params, "train")
    tune_enabled = _section(params, "tune").enabled  # dvc.yaml lists tune.enabled among train's params
    metrics = train(cfg, _section(params, "mlflow"), tune_enabled)  # it says which model config it used
    if metrics:
        print(f"train: test/loss {metrics['test/loss']:.5f} after {metrics['epochs']} epochs ({metrics['fit_seconds']} s)")


def _evaluate(params: dict, args: argparse.Namespace) -> None:
    from aeops.evaluation.evaluate import evaluate, methods

    cfg = _section(params, "evaluate")
    record = evaluate(cfg, _section(params, "mlflow"))
    results = methods(record)
    print(f"evaluate: metrics → {cfg.metrics_file}, plots → {cfg.plots_dir}")
    keys = ("recon_mse", "psnr", "auroc", "auprc", "f1", "knn_accuracy")
    print(f"  {'method':<17}" + "".join(f"{k:>14}" for k in keys))
    for method, values in results.items():
        cells = "".join(f"{values[k]:>14.4f}" if values.get(k) is not None else f"{'-':>14}" for k in keys)
        print(f"  {method:<17}{cells}")
    for line in record["warnings"]:
        print(f"warning: evaluate: {line}", file=sys.stderr)


def _register(params: dict, args: argparse.Namespace) -> None:
    from aeops.registry.register import register

    cfg = _section(params, "register")
    rec = register(cfg, _section(params, "mlflow"))
    print(f"register: {rec['model_uri']} (alias challenger) → {cfg.output_file}; promote with `make promote`")


def _promote(params: dict, args: argparse.Namespace) -> None:
    from aeops.registry.promote import promote

    cfg = _section(params, "register")
    r = promote(cfg, _section(params, "mlflow"), version=args.version, force=args.force, rollback=args.rollback)
    print(f"promote: {r['name']} production → version {r['production']} (previous: {r['previous']}; {r['reason']})")


def _serve(params: dict, args: argparse.Namespace) -> None:
    """MLflow's scoring app behind aeops's request bounds, under uvicorn (aeops.serving.server)."""
    from aeops.serving.server import serve

    cfg = _section(params, "serve")
    port = _serve_port(args.port, os.environ.get("AEOPS_SERVE_PORT"), cfg.port)
    uri = args.model or cfg.model or ModelRef.default(_section(params, "register").model_name).uri
    tracking = _tracking(params)
    _require_model(uri, tracking, params)
    serve(uri, tracking_uri=tracking, host=args.host or cfg.host, port=port, workers=args.workers or cfg.workers)


def _tracking(params: dict) -> str:
    from aeops.tracking import tracking_uri

    return tracking_uri(_section(params, "mlflow"))


def _require_model(model_uri: str, tracking: str, params: dict) -> None:
    from aeops.tracking import require_model

    require_model(model_uri, tracking_uri=tracking, mlflow_cfg=_section(params, "mlflow"),
                  registered_file=_section(params, "register").output_file)


def _serve_port(flag: int | None, env: str | None, default: int) -> int:
    """--port, else AEOPS_SERVE_PORT, else serve.port; each must be a port number 1–65535."""
    for value, where in ((flag, "--port"), (env, "AEOPS_SERVE_PORT")):
        if value is None or value == "":
            continue
        port = _port_number(str(value))
        if port is None:
            raise AeopsError(f"{where} = {value!r}: not a port number (1–65535)")
        return port
    return default


def _port_number(text: str) -> int | None:
    """The port 1–65535 that `text` names in ASCII digits ('²' passes isdigit() but not int()), else None."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdecimal() and 1 <= int(text) <= 65535 else None


def _score(params: dict, args: argparse.Namespace) -> None:
    import mlflow

    from aeops.serving.batch import score_file
    cfg = _section(params, "register")
    uri = _tracking(params)
    mlflow.set_tracking_uri(uri)
    model = args.model or ModelRef.default(cfg.model_name).uri
    refuse_dvc_out(args.output)
    if args.heatmaps:
        refuse_dvc_out(args.heatmaps)
    _require_model(model, uri, params)
    summary = score_file(model, args.input, args.output, chunk_rows=args.chunk_rows, output=args.output_mode,
                         explain=args.explain or 0, heatmaps=args.heatmaps)
    for line in summary.warnings:
        print(f"warning: score: {line}", file=sys.stderr)
    flagged = (f", {summary.flagged_share:.1%} flagged, {summary.out_of_range_share:.1%} with a feature out of "
               "the training range" if summary.flagged_share is not None else "")
    print(f"score: {summary.rows} rows{flagged} → {args.output}")


def _monitor(params: dict, args: argparse.Namespace) -> int:
    """`aeops monitor [DATA]` (default monitor.path, the served model), or the stage (`args.stage`: the model the
    pipeline just registered); exit code 1 on drift."""
    import mlflow

    from aeops.io import read_json
    from aeops.monitoring.monitor import log_run, monitor_file, summary_line, write_outputs

    cfg, mlflow_cfg = _section(params, "monitor"), _section(params, "mlflow")
    data = args.input or cfg.path
    uri = _tracking(params)
    mlflow.set_tracking_uri(uri)
    model = args.model or cfg.model
    if model is None:
        register = _section(params, "register")
        if not args.stage:  # the command: the served model
            model = ModelRef.default(register.model_name).uri
        else:  # the stage: the model the pipeline just registered
            if not os.path.isfile(register.output_file):
                raise DataError(f"{register.output_file}: not found; run `dvc repro register` first")
            model = read_json(register.output_file)["model_uri"]
    refuse_dvc_out(cfg.output_dir)
    _require_model(model, uri, params)
    result = monitor_file(model, data, chunk_rows=cfg.chunk_rows, alpha=cfg.alpha, psi_threshold=cfg.psi_threshold)
    paths = write_outputs(result, cfg.output_dir)
    run_id = log_run(result, paths, mlflow_cfg)
    print(f"monitor: {summary_line(result)}")
    print(f"  report: {paths[1]} (JSON {paths[0].name}); MLflow run {run_id} in '{mlflow_cfg.experiment}-monitoring'")
    return 1 if result["verdict"] == "drift" else 0


def _compress(params: dict, args: argparse.Namespace) -> None:
    from aeops.compression.folder import compress_folder, load_codec_model

    refuse_dvc_out(args.output)
    model = args.model or ModelRef.default(_section(params, "register").model_name).uri
    codec = load_codec_model(model, _tracking(params))
    r = compress_folder(codec, args.input, out_file=args.output, error=args.error)
    print(f"compress: {r['images']} images → {args.output} ({r['bytes']:,} bytes, {r['bpp']:.3f} bits per pixel; "
          f"{r['model']}, error {args.error})")
    if r["skipped_files"]:
        print(f"warning: compress: skipped {r['skipped_files']} file(s) that are not PNG/JPEG images", file=sys.stderr)
    if r["clipped_codes"]:
        print(f"warning: compress: {r['clipped_codes']} code value(s) lay far outside the training codes and were "
              "clipped: those images are unlike the training images and decode poorly", file=sys.stderr)


def _decompress(params: dict, args: argparse.Namespace) -> None:
    from aeops.compression.folder import decompress_file, load_codec_model, read_header

    refuse_dvc_out(args.output)
    written = read_header(args.input)["model"]
    model = args.model or (registered(written["name"], version=written["version"]) if written.get("name") else None)
    if model is None:
        raise DataError(f"{args.input}: compressed with a model bundle folder, not a registered model; "
                        "pass that folder as --model")
    r = decompress_file(load_codec_model(model, _tracking(params)), args.input, args.output)
    print(f"decompress: {r['images']} images → {args.output} (PNG; {r['model']})")


def _sample(params: dict, args: argparse.Namespace) -> None:
    from aeops.data.raw import write_sample

    refuse_dvc_out(args.output)
    n = write_sample(_section(params, "register").data_dir, args.output, args.split, args.rows)
    print(f"sample: {n} rows of the {args.split} split in raw units → {args.output}")


def _export(params: dict, args: argparse.Namespace) -> None:
    from aeops.scoring.reference import resolve_bundle
    from aeops.serving.onnx_export import export_onnx, registered_as

    cfg = _section(params, "register")
    refuse_dvc_out(args.output_dir)
    if args.model:
        bundle, name, version = resolve_bundle(args.model, _tracking(params))
    else:
        bundle = Path(cfg.bundle_dir)
        name, version = registered_as(bundle, cfg.output_file)
    path = export_onnx(bundle, args.output_dir, name=name, version=version)
    print(f"export: {path} (raw rows in; scores, flags and codes out{f'; {name} version {version}' if version else ''})")


def _report(params: dict, args: argparse.Namespace) -> None:
    from aeops.evaluation.results import report_path
    from aeops.scoring.bundle import bundle_run_id

    cfg = _section(params, "evaluate")
    path = report_path(cfg, bundle_run_id(cfg.bundle_dir))
    if not path.is_file():
        raise DataError(f"{path}: no report for the current model (reports/ is not a DVC out); run "
                        "`dvc repro -f evaluate`, or open the run's report/ artifact in `make ui`")
    print(f"report: {path.resolve()}")


def _compare(params: dict, args: argparse.Namespace) -> None:
    from aeops.compare import compare_runs, render
    from aeops.tracking import tracking_uri

    cfg = _section(params, "mlflow")
    print(render(compare_runs(cfg.experiment, tracking_uri(cfg), args.last, args.data)))


COMMANDS: dict[str, tuple[Callable, str]] = {
    "prepare": (_prepare, "stage: load, split, scale the data"),
    "tune": (_tune, "stage: Optuna search → tune/best_params.json"),
    "tune-worker": (_tune_worker, "join a running study on shared storage as an extra worker"),
    "train": (_train, "stage: train the autoencoder"),
    "evaluate": (_evaluate, "stage: test metrics of the model and baselines"),
    "register": (_register, "stage: register the scoring model, alias challenger"),
    "promote": (_promote, "move alias production (quality gate; --force, --rollback)"),
    "serve": (_serve, "serve models:/<name>@production over REST on 127.0.0.1"),
    "score": (_score, "score a CSV/Parquet file in chunks → Parquet"),
    "monitor": (_monitor, "drift check of a CSV/Parquet batch against the model's training profile (exit 1 on drift)"),
    "compress": (_compress, "compress a folder of images into one .aez file with an image model"),
    "decompress": (_decompress, "decompress an .aez file into a folder of PNGs (with the model that compressed it)"),
    "export": (_export, "export encoder/decoder to ONNX"),
    "report": (_report, "print the path of the current model's offline HTML report"),
    "compare": (_compare, "training runs side by side: AUROC vs kNN, recon MSE, lineage"),
    "sample": (_sample, "write rows of a prepared split in raw units (CSV/Parquet/JSON request body)"),
}


DEFAULT_ERROR = 2.0


def _error(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    from aeops.compression.container import MAX_ERROR, MIN_ERROR

    if not MIN_ERROR <= value <= MAX_ERROR:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of gray levels in [{MIN_ERROR:g}, {MAX_ERROR:g}]")
    return value


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdecimal()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number ≥ 1")
    return int(text)


def _port(text: str) -> int:
    port = _port_number(text)
    if port is None:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number (1–65535)")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aeops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.set_defaults(stage=False)
        if name == "promote":
            p.add_argument("--version", help="version to promote (default: the 'challenger' alias)")
            p.add_argument("--force", action="store_true", help="promote even if worse than production")
            p.add_argument("--rollback", action="store_true", help="move production back to 'previous'")
        if name in ("serve", "score", "monitor"):  # compress/decompress add theirs below
            p.add_argument("--model", help="model URI (default: models:/<register.model_name>@production)")
        if name == "monitor":
            p.add_argument("input", nargs="?", help="CSV or Parquet batch in raw units (default: monitor.path)")
        if name == "serve":
            p.add_argument("--host", help="interface (default: serve.host, 127.0.0.1)")
            p.add_argument("--workers", type=_positive, help="server processes (default: serve.workers, 1)")
            p.add_argument("--port", type=_port, help="port (default: AEOPS_SERVE_PORT, else serve.port)")
        if name == "score":
            p.add_argument("input", help="CSV or Parquet file with the model's feature columns (image models: or a "
                                         "folder of PNG/JPEG images)")
            p.add_argument("output", help="Parquet file to write")
            p.add_argument("--chunk-rows", type=_positive, default=50_000, help="rows per chunk (default 50000)")
            p.add_argument("--output-mode", choices=("scores", "reconstruction", "anomaly_map"), default="scores",
                           help="per-row scores (default), the reconstruction, or (image models) the anomaly map")
            p.add_argument("--explain", type=_positive, metavar="K",
                           help="add each row's K features with the largest share of its score (table models)")
            p.add_argument("--heatmaps", metavar="DIR", help="new folder: per image its anomaly map over it "
                           "(<name>_heatmap.png) and the pixels above the pixel threshold (<name>_mask.png)")
        if name in ("compress", "decompress"):
            p.add_argument("input", help="folder of PNG/JPEG images" if name == "compress" else ".aez file")
            p.add_argument("output", help=".aez file to write" if name == "compress" else "new folder for the PNGs")
            default = ("models:/<register.model_name>@production" if name == "compress"
                       else "the registered version named in the file")
            p.add_argument("--model", help=f"model URI or model bundle folder (default: {default})")
        if name == "compress":
            p.add_argument("--error", type=_error, default=DEFAULT_ERROR,
                           help="RMS error the quantisation may add per pixel, in 8-bit gray levels: smaller is "
                                f"larger and closer to the network's reconstruction (default {DEFAULT_ERROR})")
        if name == "export":
            p.add_argument("--format", choices=("onnx",), default="onnx")
            p.add_argument("--model", help="models:/<name>/<version>, models:/<name>@<alias> or a model bundle folder "
                           "(default: register.bundle_dir, written by evaluate)")
            p.add_argument("--output-dir", default="exports/onnx", help="default: exports/onnx (outside DVC outs)")
        if name == "compare":
            p.add_argument("--last", type=_positive, default=10, help="newest N runs (default 10)")
            p.add_argument("--data", help="only runs on this data (the run tag `data`, e.g. 'digits[0-8]')")
        if name == "sample":
            p.add_argument("output", help="file to write: .csv, .parquet, or .json (a REST request body)")
            p.add_argument("--split", choices=("train", "val", "test"), default="test")
            p.add_argument("--rows", type=_positive, default=500, help="first N rows (default 500)")
    return parser


def run_stage(command: str, params_file: str = "params.yaml", args: argparse.Namespace | None = None) -> int:
    """Run one command; aeops errors become one line on stderr (exit 2, or 1 for a refused promotion).

    MLflow errors count as user errors (an unknown model, alias or server); every other exception
    is a bug and keeps its traceback. `AEOPS_DEBUG=1` re-raises the one-line errors too.
    """
    quiet()
    debug = os.environ.get("AEOPS_DEBUG", "") not in ("", "0")
    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None  # killed: MLflow run ends KILLED
    try:
        stage = argparse.Namespace(stage=True, input=None, model=None)  # a DVC stage: no command-line arguments
        code = COMMANDS[command][0](load_params(params_file), args if args is not None else stage)
    except PromotionRefused as err:
        if debug:
            raise
        print(f"refused: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        if debug or not _user_error(err):
            raise
        message = (getattr(err, "message", None) or str(err)).strip().splitlines()
        text = message[0] if message else type(err).__name__
        prefix = "" if isinstance(err, AeopsError) else f"{command}: "
        print(f"error: {prefix}{text}", file=sys.stderr)
        return 2
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old)
    return code or 0  # a command may return 1 (monitor: drift)


def _user_error(err: Exception) -> bool:
    """An aeops error or an MLflow one. MLflow is not imported to ask (1.5 s): a command that never imported it
    (prepare, sample) cannot have raised its errors."""
    mlflow_errors = sys.modules.get("mlflow.exceptions")
    return isinstance(err, AeopsError) or (mlflow_errors is not None and isinstance(err, mlflow_errors.MlflowException))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _enter_project(args: argparse.Namespace) -> str:
    """cd into the params file's folder (the project root); file arguments stay where the user meant."""
    params = os.path.abspath(args.params)
    if not os.path.isfile(params):
        where = "this folder" if args.params == "params.yaml" else os.path.dirname(params)
        raise AeopsError(f"{args.params}: params file not found in {where}: run from the project root or pass --params")
    for name in ("input", "output", "bundle", "output_dir"):
        value = getattr(args, name, None)
        if value:
            setattr(args, name, os.path.abspath(value))
    model = getattr(args, "model", None)
    if model and not model.startswith(("models:/", "runs:/")) and os.path.isdir(model):  # a bundle folder
        args.model = os.path.abspath(model)
    os.chdir(os.path.dirname(params))
    return os.path.basename(params)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        params_file = _enter_project(args)
    except AeopsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return run_stage(args.command, params_file, args)


if __name__ == "__main__":
    sys.exit(main())
