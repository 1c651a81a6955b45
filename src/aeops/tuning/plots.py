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

PLOTS = {
    "optimization_history.png": ovm.plot_optimization_history,
    "param_importances.png": ovm.plot_param_importances,
    "parallel_coordinate.png": ovm.plot_parallel_coordinate,
}


def write_study_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Write each plot that the study supports (importances need ≥ 2 complete trials and a varied param)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(10, 6)
            fig.tight_layout()
            with atomic_path(out_dir / name) as tmp:
                fig.savefig(tmp, dpi=100, format="png")
            plt.close(fig)
            written.append(out_dir / name)
        except (ValueError, RuntimeError) as err:  # e.g. too few complete trials for importances
            log.warning("tune: %s skipped (%s)", name, err)
    return written
