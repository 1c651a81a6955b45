"""Stage `evaluate`: the trained model and classical baselines on the same test split, side by side."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeops.compression.prior import build_prior
from aeops.config import EvaluateConfig, MlflowConfig
from aeops.data.prepared import (
    MAX_EVAL_VALUES,
    SPLITS,
    VAL_ANOMALIES,
    Meta,
    PreparedData,
    Split,
    has_split,
    sample_split,
)
from aeops.data.synthetic import synthetic_anomalies
from aeops.errors import ConfigError, DataError
from aeops.evaluation import pixels, plots
from aeops.evaluation.baselines import QUANT_BITS, Coded, model_metrics, run_baselines
from aeops.evaluation.metrics import quantize_codes
from aeops.evaluation.results import (  # noqa: F401 (methods and headline_metrics re-exported)
    comparison_table,
    headline_metrics,
    methods,
    report_path,
)
from aeops.io import atomic_path, write_json
from aeops.models.ensemble import reconstruct_members
from aeops.models.layout import Layout
from aeops.scoring.bundle import ModelBundle
from aeops.scoring.fit import FittedRule, RuleSettings, fit_rule, residual_rule
from aeops.scoring.rule import ScoringRule, feature_shares
from aeops.tracking import require_run

MIN_TEST_ANOMALIES = 10  # fewer: AUROC/AUPRC swing with a single row (a warning, not an error)



def evaluation_warnings(latent_dim: int, n_features: int, test_is_anomaly: np.ndarray | None) -> list[str]:
    """Reasons not to trust the numbers: too few test anomalies, or a code as wide as the input."""
    found = []
    if test_is_anomaly is not None:
        n = int(np.sum(test_is_anomaly))
        if n < MIN_TEST_ANOMALIES:
            found.append(
                f"the test split holds {n} anomalies (< {MIN_TEST_ANOMALIES}): AUROC/AUPRC are unreliable; "
                "use more data or a larger prepare.test_fraction"
            )
    if latent_dim >= n_features:
        found.append(
            f"latent size {latent_dim} is not below the {n_features} features: the model (and PCA with as many "
            "components) can copy its input, so reconstruction scores say little; use a smaller latent_dim"
        )
    return found


def unlabelled_warning(rule: ScoringRule, *, choice: str) -> str:
    """What the numbers of a run without labels rest on: synthetic anomalies, and a threshold on contaminated rows."""
    where = (f"flags {rule.contamination:.1%} of the validation rows (evaluate.contamination)"
             if rule.contamination is not None else
             f"is the {rule.threshold_percentile:g}th percentile of validation rows that may hold anomalies")
    chosen = " (the score rule was chosen by one)" if "synthetic" in choice else ""
    return (f"no anomaly labels (prepare set no anomaly protocol): there is no test AUROC/AUPRC/F1, and every AUROC "
            f"this run was chosen by (tune's objective, the score rule) is against synthetic anomalies made from "
            f"validation rows{chosen}, not real ones; the threshold {where}")


def sampled_warnings(rows: dict[str, tuple[int, int]], max_rows: int | None = None) -> list[str]:
    """One line per split that evaluation replaced by a sample (every method saw the same rows)."""
    why = f"capped by evaluate.max_rows = {max_rows}" if max_rows else "too many to hold in memory"
    return [f"the {name} split has {total:,} rows, {why}: every method here was evaluated on "
            f"the same seeded random {used:,} (at most {MAX_EVAL_VALUES:,} values a split)"
            for name, (used, total) in rows.items() if used < total]


@torch.no_grad()
def encode_decode(model: torch.nn.Module, x: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic codes and reconstructions, in batches."""
    codes, recons = [], []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i : i + batch])
        z = model.encode(xb)
        codes.append(z.numpy())
        recons.append(model.decode(z).numpy())
    return np.concatenate(codes), np.concatenate(recons)


@torch.no_grad()
def member_recons(model: torch.nn.Module, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """(members, n, ...) reconstructions (members = 1 for a single network)."""
    return np.concatenate([reconstruct_members(model, torch.from_numpy(x[i : i + batch])).numpy()
                           for i in range(0, len(x), batch)], axis=1)


def rule_settings(cfg: EvaluateConfig, *, labelled: bool) -> RuleSettings:
    """What the scoring rule's fit may choose from: params.yaml's `evaluate` section. `labelled`: prepare set
    an anomaly protocol, so the normal validation rows are clean (else `contamination` sets the threshold)."""
    if labelled and isinstance(cfg.contamination, float):
        raise ConfigError(f"params.yaml: evaluate.contamination = {cfg.contamination} applies only without an anomaly "
                          "protocol (this data's clean validation rows set the threshold by evaluate.threshold_percentile); "
                          "use auto or null")
    return RuleSettings(smoothing=cfg.score_smoothing, top_fraction=cfg.score_top_fraction,
                        standardize=cfg.score_standardize, neighbors=cfg.score_neighbors, k=cfg.knn_neighbors,
                        knn_weights=tuple(cfg.knn_weights), threshold_percentile=cfg.threshold_percentile,
                        contamination=None if labelled else cfg.contamination)


@torch.no_grad()
def decode(model: torch.nn.Module, codes: np.ndarray) -> np.ndarray:
    return model.decode(torch.from_numpy(codes.astype(np.float32))).numpy()


def _normal_rows(split: Split) -> np.ndarray:
    """Validation rows that set thresholds: the normal ones (all of them without a protocol)."""
    return split.x if split.is_anomaly is None else split.x[split.is_anomaly == 0]


def fit_model_rule(cfg: EvaluateConfig, model: torch.nn.Module, *, labelled: bool, image_shape: list[int] | None,
                   train_x: np.ndarray, val_x: np.ndarray, val_recon: np.ndarray,
                   layout: dict[str, Any] | None = None) -> FittedRule:
    """The model's scoring rule, fitted on validation rows (`aeops.scoring.fit`): validation anomalies are
    prepare's labelled ones where the protocol held some out of test, else synthetic ones."""
    if cfg.score_neighbors is True and image_shape:
        raise ConfigError("params.yaml: evaluate.score_neighbors = true needs table data (the kNN term keeps the "
                          "training rows in the model); use auto or false for images")

    def anomalies() -> tuple[np.ndarray, str]:
        if has_split(cfg.data_dir, VAL_ANOMALIES):
            return sample_split(cfg.data_dir, VAL_ANOMALIES, cfg.seed, max_rows=cfg.max_rows)[0].x, "labelled"
        return synthetic_anomalies(val_x, cfg.seed, layout=layout), "synthetic"

    return fit_rule(rule_settings(cfg, labelled=labelled), image_shape=image_shape, train_x=train_x, val_x=val_x,
                    val_recon=val_recon, reconstruct=lambda x: member_recons(model, x), anomalies=anomalies, layout=layout)


def evaluate(cfg: EvaluateConfig, mlflow_cfg: MlflowConfig) -> dict[str, dict[str, Any]]:
    """Score the model and the baselines; write metrics (with warnings), plots and the model bundle; log them.

    Returns the metrics file's content: one entry per method plus `warnings`. The file holds
    reproducible numbers only (no run ids): the same params and data give the same bytes.
    """
    data = PreparedData(cfg.data_dir)
    bundle = _trained_bundle(cfg, mlflow_cfg, data)
    model = bundle.network()
    meta = data.meta
    (train, n_train), (val, n_val), (test, n_test) = (sample_split(cfg.data_dir, s, cfg.seed, max_rows=cfg.max_rows)
                                                      for s in SPLITS)
    val_x = _normal_rows(val)
    lo, hi = meta.value_range
    data_range = float(hi - lo) or 1.0
    if cfg.score_smoothing > 0 and not meta.image_shape:
        raise ConfigError(
            f"params.yaml: evaluate.score_smoothing = {cfg.score_smoothing} needs image data "
            "(prepare.source digits, mnist or fashion_mnist); use 0 for tables"
        )

    train_codes, _ = encode_decode(model, train.x)
    test_codes, test_recon = encode_decode(model, test.x)
    val_members, test_members = member_recons(model, val_x), member_recons(model, test.x)
    quantized = quantize_codes(test_codes, train_codes.min(0), train_codes.max(0), QUANT_BITS)
    image_shape = meta.image_shape
    layout = meta.layout
    fitted = fit_model_rule(cfg, model, labelled=meta.has_anomaly, image_shape=image_shape, train_x=train.x, val_x=val_x,
                            val_recon=val_members, layout=layout)
    coded = Coded(
        train_codes=train_codes, test_codes=test_codes, test_recon=test_recon,
        test_recon_quantized=decode(model, quantized), val_scores=fitted.val_scores,
        test_scores=fitted.scorer(test.x, test_members),
    )
    # every method's threshold at the model rule's percentile of its own validation scores (contamination moves it)
    thresholded = cfg.model_copy(update={"threshold_percentile": fitted.rule.threshold_percentile})
    sizes = {"latent_dim": bundle.latent_dim, "data_range": data_range, "cfg": thresholded}
    results = {"model": model_metrics(coded, train=train, test=test, **sizes)}
    settings = rule_settings(cfg, labelled=meta.has_anomaly)
    knn = None if fitted.index is None else [fitted.val_distances, fitted.distances(test.x)]
    baselines, baseline_scores = run_baselines(  # PCA's residual scale is fitted on PCA's validation residuals
        train=train, val_x=val_x, test=test, knn=knn, **sizes,
        make_score=lambda vx, vr: residual_rule(settings, image_shape=image_shape, val_x=vx, val_recon=vr,
                                                layout=layout).residual)
    results.update(baselines)
    _describe_rules(results, cfg, fitted=fitted, standardized=settings.standardized(image_shape), members=bundle.members)
    scores = {"model": coded.test_scores, **baseline_scores}
    warnings = evaluation_warnings(bundle.latent_dim, meta.feature_count, test.is_anomaly)
    if not meta.has_anomaly:
        warnings.append(unlabelled_warning(fitted.rule, choice=fitted.choice))
    warnings += sampled_warnings({"train": (len(train), n_train), "val": (len(val), n_val), "test": (len(test), n_test)},
                                 cfg.max_rows)
    if results["model"]["threshold"] != fitted.rule.threshold:  # one percentile of the same scores
        raise AssertionError("the model's metrics and its scoring rule disagree on the threshold")
    localisation = None
    if image_shape:
        fitted, localisation = _localise(fitted, image_shape=image_shape, train_x=train.x, val=(val_x, val_members),
                                         test=test, test_members=test_members)

    with atomic_path(cfg.plots_dir, replace_dir=True) as tmp:
        tmp.mkdir(parents=True)
        plots.write_curve_csvs(tmp, scores, test.is_anomaly)
        plots.plot_curves_png(tmp, scores, test.is_anomaly)
        plots.plot_score_histograms(tmp, scores, test.is_anomaly, {m: r.get("threshold") for m, r in results.items()})
    prior = _code_prior(cfg, model, codes=train_codes, bundle=bundle, meta=meta) if image_shape else None
    # what register registers and serving scores with
    bundle.with_scoring(fitted, train_x=train.x, latent_prior=prior).save(cfg.bundle_dir)
    record = {**results, **({"localisation": localisation} if localisation else {}), "warnings": warnings}
    write_json(cfg.metrics_file, record)
    _log(bundle.run_id, cfg, mlflow_cfg=mlflow_cfg, results=record, warnings=warnings)
    _report(bundle.run_id, cfg, mlflow_cfg=mlflow_cfg, results=results, warnings=warnings, test=test,
            recon=test_recon, codes=test_codes, scores=coded.test_scores, image_shape=image_shape,
            feature_names=Layout.from_dict(layout).names if layout else list(meta.feature_names),
            why=lambda rows: feature_shares(fitted.scorer.contributions(test.x[rows], test_members[:, rows])),
            roles=meta.roles, localisation=localisation, pixel_threshold=fitted.rule.pixel_threshold,
            maps=(lambda rows: pixels.channel_maps(fitted.scorer.anomaly_map(test.x[rows], test_members[:, rows]),
                                                   image_shape)) if image_shape else None)
    return record


def _localise(fitted: FittedRule, *, image_shape: list[int], train_x: np.ndarray, val: tuple[np.ndarray, np.ndarray],
              test: Split, test_members: np.ndarray) -> tuple[FittedRule, dict[str, Any] | None]:
    """An image model's pixel threshold (on normal validation maps: the rule's percentile of their maxima) and,
    where the test split has masks (prepare.mask_dir), pixel AUROC and AUPRO of the model's maps and of the
    per-pixel baseline (each pixel's squared z-score against the training images)."""
    val_maps = pixels.channel_maps(fitted.scorer.anomaly_map(*val), image_shape)
    percentile = fitted.rule.threshold_percentile if fitted.rule.threshold_percentile is not None else 99.0
    rule = replace(fitted.rule, pixel_threshold=pixels.pixel_threshold(val_maps, percentile))
    fitted = replace(fitted, rule=rule, scorer=fitted.scorer.with_rule(rule))
    if test.masks is None:
        return fitted, None
    masks = np.asarray(test.masks)
    maps = pixels.channel_maps(fitted.scorer.anomaly_map(test.x, test_members), image_shape)
    baseline = pixels.baseline_maps(test.x, pixels.pixel_baseline(train_x, image_shape), image_shape)
    flagged = maps > rule.pixel_threshold
    truth = masks > 0
    return fitted, {
        "model": pixels.localisation_metrics(maps, masks),
        "per_pixel": pixels.localisation_metrics(baseline, masks),
        "pixel_threshold": rule.pixel_threshold,
        "mask_iou": float((flagged & truth).sum() / max(int((flagged | truth).sum()), 1)),
        "defect_images": int(truth.reshape(len(truth), -1).any(axis=1).sum()),
        "regions": int(pixels.regions(masks).max()),
    }


def _trained_bundle(cfg: EvaluateConfig, mlflow_cfg: MlflowConfig, data: PreparedData) -> ModelBundle:
    """The trained network as a bundle, checked against the store (its run) and the data (its hash)."""
    bundle = ModelBundle.from_training(cfg.model_dir, scaler=data.scaler)
    require_run(bundle.run_id, mlflow_cfg, source=f"{cfg.model_dir}/run.json")  # before anything is written
    if bundle.data_hash != data.hash:
        raise DataError(
            f"{cfg.model_dir}: the model was trained on other data than {cfg.data_dir} (hash "
            f"{bundle.data_hash[:12]} vs {data.hash[:12]}); run `dvc repro train` first"
        )
    return bundle


def _describe_rules(results: dict[str, dict[str, Any]], cfg: EvaluateConfig, *, fitted: FittedRule,
                    standardized: bool, members: int) -> None:
    """The scoring rule of the model and of PCA, shown beside the numbers it produced (PCA: the plain residual)."""
    for method in ("model", "pca"):
        results[method] |= {"score_smoothing": cfg.score_smoothing, "score_top_fraction": cfg.score_top_fraction,
                            "score_standardized": standardized}
    results["model"] |= {"ensemble": members, "score_neighbors": fitted.rule.neighbors,
                         "score_knn_weight": fitted.weight, "score_choice": fitted.choice}
    if fitted.rule.contamination is not None:  # no labels: the share of validation rows the threshold flags
        results["model"]["contamination"] = fitted.rule.contamination
    results["pca"] |= {"ensemble": 1, "score_neighbors": 0, "score_knn_weight": 0.0, "score_choice": "residual"}


def _code_prior(cfg: EvaluateConfig, model: torch.nn.Module, *, codes: np.ndarray, bundle: ModelBundle,
                meta: Meta) -> dict[str, Any]:
    """An image model's latent prior: what `aeops compress` codes with (prepare records the white pixel's raw value)."""
    if meta.pixel_max is None:
        raise DataError(f"{cfg.data_dir}/meta.json: has no pixel_max (prepared by an older aeops); "
                        "run `dvc repro prepare` first")
    return build_prior(model, codes, bundle.scaler, meta.pixel_max)


def _report(
    run_id: str, cfg: EvaluateConfig, *, mlflow_cfg: MlflowConfig, results: dict, warnings: list[str], **data: Any
) -> Path:
    """The offline HTML report of this run: written to `report_dir` and logged to the run."""
    import mlflow

    from aeops.evaluation.report import build_report, report_title
    from aeops.tracking import loss_curves

    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    history = loss_curves(client, run_id)
    image_shape = data.pop("image_shape")
    shape = tuple(image_shape) if image_shape else None
    path = build_report(
        report_path(cfg, run_id),
        title=report_title(run, run_id),
        table=comparison_table(results),
        plots_dir=cfg.plots_dir,
        threshold=results["model"].get("threshold"),
        image_shape=shape,
        history=history,
        warnings=warnings,
        seed=cfg.seed,
        **data,
    )
    client.log_artifact(run_id, str(path), "report")
    return path


def _log(run_id: str, cfg: EvaluateConfig, *, mlflow_cfg: MlflowConfig, results: dict, warnings: list[str]) -> None:
    """Headline metrics (`test/auroc`, `vs_baseline/<method>/auroc`, ...), the full comparison as a table artifact.

    The scoring settings are tags, not params: a rerun of `evaluate` with other settings updates the
    same training run, and MLflow params cannot change once logged.
    """
    import mlflow

    from aeops.tracking import flatten, setup_experiment

    setup_experiment(mlflow_cfg)
    flat = headline_metrics(results)
    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags(flatten(cfg.model_dump(), "evaluate."))
        mlflow.set_tag("evaluate.warnings", " | ".join(warnings) or "none")
        mlflow.log_metrics(flat)
        # the table as JSON {"columns", "data"} (mlflow.log_table's format): log_table would append a rerun's rows
        mlflow.log_text(comparison_table(results).to_json(orient="split", index=False), "evaluate/comparison.json")
        mlflow.log_artifact(cfg.metrics_file, "evaluate")
        mlflow.log_artifacts(cfg.plots_dir, "evaluate/plots")
