"""dvc.yaml declares exactly what each stage reads: its params section, its
script, every components package it imports (transitively) and its data."""

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def local_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Every components.* / pipelines.* module ``module`` imports, transitively."""
    seen = set() if seen is None else seen
    path = Path(importlib.util.find_spec(module).origin)
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in ("components", "pipelines") and name not in seen and _is_module(name):
                seen.add(name)
                local_imports(name, seen)
    return seen


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a class or function imported from a module
        return False


def dep_for(module: str) -> str:
    """The dvc.yaml dep that covers a module: its package folder, or the file."""
    parts = module.split(".")
    if len(parts) == 1:
        return f"{parts[0]}/__init__.py"
    if len(parts) >= 2 and (REPO / parts[0] / parts[1]).is_dir():
        return f"{parts[0]}/{parts[1]}"
    return "/".join(parts) + ".py"


@pytest.mark.parametrize("stage", list(DVC))
def test_stage_declares_its_params_section_only(stage):
    assert DVC[stage]["params"] == [stage]
    assert DVC[stage]["cmd"] == f"python -m pipelines.{stage}"


@pytest.mark.parametrize("stage", list(DVC))
def test_stage_code_deps_match_its_imports(stage):
    imported = {dep_for(m) for m in local_imports(f"pipelines.{stage}")} - {"components/__init__.py",
                                                                           "pipelines/__init__.py"}
    code_deps = {d for d in DVC[stage]["deps"] if d.startswith(("components", "pipelines"))}
    assert code_deps == imported | {f"pipelines/{stage}.py"}


@pytest.mark.parametrize("stage", list(DVC))
def test_stage_paths_are_declared(stage):
    module = importlib.import_module(f"pipelines.{stage}")
    declared = list(DVC[stage].get("deps", [])) + list(DVC[stage].get("outs", []))
    for entry in DVC[stage].get("metrics", []) + DVC[stage].get("plots", []):
        declared += list(entry) if isinstance(entry, dict) else [entry]
    paths = [v for v in vars(module).values() if isinstance(v, Path)]
    paths += [p for v in vars(module).values() if isinstance(v, dict) for p in v.values() if isinstance(p, Path)]
    for path in paths:
        assert any(d == path.as_posix() or d.startswith(path.as_posix() + "/") for d in declared), path
