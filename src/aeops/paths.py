"""Where user commands may write: never into a DVC out (a later `dvc repro` would see it as changed)."""

from __future__ import annotations

from pathlib import Path

import yaml

from aeops.errors import DataError


def dvc_outs(root: str | Path = ".") -> list[Path]:
    """Absolute paths of every out, metric and plot that `dvc.yaml` in `root` declares ([] without one)."""
    root = Path(root).resolve()
    path = root / "dvc.yaml"
    if not path.is_file():
        return []
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {}) or {}
    found: list[Path] = []
    for stage in stages.values():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []) or []:
                name = next(iter(entry)) if isinstance(entry, dict) else entry
                found.append(root / str(name))
    return found


def refuse_dvc_out(path: str | Path, root: str | Path = ".") -> None:
    """One-line error if `path` lies inside (or is) a DVC out of the project at `root`."""
    target = Path(path).resolve()
    for out in dvc_outs(root):
        if target == out or out in target.parents:
            raise DataError(
                f"{path}: inside the DVC out '{out.relative_to(Path(root).resolve())}', which `dvc repro` "
                "owns (writing there makes the pipeline stale); write elsewhere, e.g. exports/"
            )
