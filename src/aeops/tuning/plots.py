"""Study plots (matplotlib backend): optimisation history, parameter importances, parallel coordinates."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.visualization import matplotlib as ovm  # noqa: E402

from aeops.io import atomic_path  # noqa: E402

log = logging.getLogger(__name__)

MAX_AXES = 6  # a parallel-coordinates plot with more axes is unreadable


def _importance(seed: int) -> optuna.importance.FanovaImportanceEvaluator:
    """Optuna's default evaluator (fANOVA's random forest), seeded: the same study gives the same plot bytes."""
    return optuna.importance.FanovaImportanceEvaluator(seed=seed)


def shared_params(study: optuna.Study, limit: int = MAX_AXES, *, seed: int = 0) -> list[str]:
    """Knobs every complete trial has (a variant's own knobs would draw "None" axes), most important first."""
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    names = sorted(set.intersection(*(set(t.params) for t in trials))) if trials else []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ranked = list(optuna.importance.get_param_importances(study, evaluator=_importance(seed), params=names))
    except (ValueError, RuntimeError):  # fewer than 2 complete trials, or a knob that never varied
        ranked = names
    return ranked[:limit]


PLOTS = {
    "optimization_history.png": lambda study, seed: ovm.plot_optimization_history(study),
    "param_importances.png": lambda study, seed: ovm.plot_param_importances(study, evaluator=_importance(seed)),
    "parallel_coordinate.png": lambda study, seed: ovm.plot_parallel_coordinate(
        study, params=shared_params(study, seed=seed) or None),
}


def write_study_plots(study: optuna.Study, out_dir: Path, *, seed: int = 0) -> list[Path]:
    """Write each plot that the study supports (importances need ≥ 2 complete trials and a varied param)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study, seed)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(12, 6)
            fig.tight_layout()
            with atomic_path(out_dir / name) as tmp:
                fig.savefig(tmp, dpi=100, format="png")
            plt.close(fig)
            written.append(out_dir / name)
        except (ValueError, RuntimeError) as err:  # e.g. too few complete trials for importances
            log.warning("tune: %s skipped (%s)", name, err)
    return written
