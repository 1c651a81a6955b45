"""dvc.yaml lists every aeops module a stage imports, so an edit to any of them re-runs the stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from conftest import REPO

SRC = REPO / "src"
STAGES = ("prepare", "tune", "train", "evaluate", "register", "monitor")


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(tree: ast.AST, package: str) -> set[str]:
    """aeops modules named by the import statements anywhere in `tree` (function bodies included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("aeops")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("aeops"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}")}
    return found


def _closure(start: set[str]) -> set[Path]:
    """Files of `start` and of everything they import, with each package's __init__ on the way."""
    todo, files = list(start), set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            path = _module_file(".".join(parts[:i]))
            if path is None or path in files:
                continue
            files.add(path)
            package = ".".join(parts[:i]) if path.name == "__init__.py" else ".".join(parts[: i - 1])
            todo.extend(_imports(ast.parse(path.read_text()), package))
    return files


def stage_modules(stage: str) -> set[Path]:
    """What `pipelines/<stage>.py` runs: cli.py's top level plus its `_<stage>` command, then the closure."""
    cli = ast.parse((SRC / "aeops" / "cli.py").read_text())
    top = {n for n in cli.body if isinstance(n, (ast.Import, ast.ImportFrom))}
    func = next(n for n in cli.body if isinstance(n, ast.FunctionDef) and n.name == f"_{stage}")
    helpers = [n for n in cli.body if isinstance(n, ast.FunctionDef) and n.name in _called(func)]
    names = {"aeops.cli"} | _imports(ast.Module(body=[*top], type_ignores=[]), "aeops")
    for node in (func, *helpers):
        names |= _imports(node, "aeops")
    entry = ast.parse((REPO / "pipelines" / f"{stage}.py").read_text())
    names |= _imports(entry, "aeops")
    files = _closure(names - {"aeops.cli"})
    files.add(SRC / "aeops" / "cli.py")
    return files


def _called(func: ast.FunctionDef) -> set[str]:
    return {n.func.id for n in ast.walk(func) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_cover_every_imported_module(stage: str):
    deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]
    covered = [REPO / d for d in deps if "${" not in d]
    missing = sorted(
        str(f.relative_to(REPO)) for f in stage_modules(stage)
        if not any(f == d or d in f.parents for d in covered)
    )
    assert not missing, f"dvc.yaml stage '{stage}' misses deps {missing}"
    assert REPO / "pipelines" / f"{stage}.py" in covered


def test_closure_follows_function_level_imports():
    files = {str(f.relative_to(SRC)) for f in stage_modules("evaluate")}
    assert "aeops/evaluation/evaluate.py" in files and "aeops/models/factory.py" in files
    assert "aeops/config.py" in files and "aeops/io.py" in files
