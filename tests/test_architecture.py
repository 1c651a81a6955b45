"""The arrows between aeops's packages point one way: read from every import statement in src/aeops.

Function-level and TYPE_CHECKING imports count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
from conftest import REPO

SRC = REPO / "src"
# The consumers of scores share the scoring core and import none of each other, but for these, each for a reason.
CONSUMERS = ("evaluation", "serving", "monitoring", "compression", "registry")
ALLOWED = {
    ("registry", "serving"): "the registered model is the serving pyfunc (register logs aeops.serving.pyfunc)",
    ("registry", "evaluation"): "register logs evaluate's headline metrics; promotion re-measures them with "
                                "evaluation's formulas on the same test split",
    ("evaluation", "compression"): "evaluate fits the code prior an image bundle carries (compression.prior)",
}
# Arrows that must not exist at all (the scoring core below every consumer; training below evaluation).
FORBIDDEN = [
    ("serving", "evaluation"), ("monitoring", "serving"), ("monitoring", "evaluation"), ("training", "evaluation"),
    *[("scoring", p) for p in ("evaluation", "serving", "monitoring", "compression", "registry", "training",
                                "tuning", "data", "config", "tracking", "cli")],
    *[("models", p) for p in ("config", "scoring", "evaluation", "serving", "monitoring", "training", "tracking",
                               "data", "cli")],
]


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in (SRC / "aeops").rglob("*.py")}


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@cache
def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        deps: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {_resolve(a.name) for a in node.names if a.name.startswith("aeops")}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("aeops"):
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else _resolve(node.module)
                         for a in node.names}
        graph[name] = {d for d in deps if d and d not in (name, "aeops")}
    return graph


def _package(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _arrows(graph: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    """(package, package) → the module imports behind that arrow."""
    arrows: dict[tuple[str, str], list[str]] = {}
    for module, deps in graph.items():
        for dep in deps:
            a, b = _package(module), _package(dep)
            if a != b:
                arrows.setdefault((a, b), []).append(f"{module} → {dep}")
    return arrows


def test_the_graph_sees_lazy_imports():
    graph = _graph()
    assert "aeops.scoring.bundle" in graph["aeops.evaluation.evaluate"]
    assert "aeops.models.factory" in graph["aeops.scoring.bundle"]  # imported inside a method
    assert "aeops.figures" in graph["aeops.training.run_log"]  # imported inside a function


def test_no_import_circle():
    assert _cycles(_graph()) == []


def test_cycle_detection_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(("source", "target"), FORBIDDEN, ids=[f"{a}-{b}" for a, b in FORBIDDEN])
def test_forbidden_arrow_is_absent(source: str, target: str):
    assert not _arrows(_graph()).get((source, target)), f"{source} must not import {target}"


def test_consumers_of_scores_import_only_the_core_and_each_other_where_allowed():
    arrows = _arrows(_graph())
    between = {(a, b): found for (a, b), found in arrows.items() if a in CONSUMERS and b in CONSUMERS}
    unexplained = {k: v for k, v in between.items() if k not in ALLOWED}
    assert not unexplained, f"consumers importing each other: {unexplained}"
    stale = [k for k in ALLOWED if k not in between]
    assert not stale, f"allowed arrows that no longer exist (drop them from ALLOWED): {stale}"
    for consumer in CONSUMERS:
        assert (consumer, "scoring") in arrows, f"{consumer} does not use the scoring core"
