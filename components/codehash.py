"""The code a stage runs: the project files a module imports, and their hash.

Two consumers need the same answer. ``dvc.yaml`` lists, for each stage, the
files its script imports (transitively), so a change elsewhere leaves the
stage's results valid (tests/test_contract.py checks the lists against
``import_closure``). And a Ray Train run is named by a content key of its
inputs, code included (``code_key``): a run started by older code is never
resumed or handed back as the result of newer code, here or on shared
checkpoint storage.

Imports are read from the source (``ast``), not executed, so lazy imports
inside functions count too. Only ``components`` and ``pipelines`` modules are
followed; a package's ``__init__.py`` counts when a module inside it is
imported, since importing runs it.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "pipelines")


def import_closure(module: str) -> list[str]:
    """Repository-relative paths of the files ``module`` runs when imported, sorted."""
    seen: set[Path] = set()
    pending = list(_module_files(module))
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        pending.extend(p for name in _imported_names(path) for p in _module_files(name) if p not in seen)
    return sorted(p.relative_to(ROOT).as_posix() for p in seen)


def code_key(*modules: str) -> str:
    """A short hash of the bytes of every file the ``modules`` import."""
    digest = hashlib.sha256()
    for relative in sorted({f for m in modules for f in import_closure(m)}):
        digest.update(relative.encode() + b"\0" + (ROOT / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@lru_cache(maxsize=None)
def _imported_names(path: Path) -> tuple[str, ...]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return tuple(names)


def _module_files(name: str) -> list[Path]:
    """The files importing ``name`` runs, if it is a project module: each package's
    ``__init__.py`` along the way and the module itself (a name that is a class or
    function inside a module adds nothing beyond that module)."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return []
    files = []
    for i in range(1, len(parts) + 1):
        base = ROOT.joinpath(*parts[:i])
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                files.append(candidate)
    return files


REGISTRY = "components/models/registry.py"  # a name table: a zoo stage depends on its family's module, not on it
SHARED_LAYERS = "components/models/nn"  # layers the zoo families share: one folder dep


def stage_code(stage: str) -> list[str]:
    """The code deps dvc.yaml declares for ``stage`` (``train``, ``variant``: the zoo's stage templates,
    whose ``${item}`` is the family)."""
    if stage not in ("train", "variant"):
        return import_closure(f"pipelines.{stage}")
    shared = [f for f in import_closure("pipelines.train") if f != REGISTRY]
    return sorted(shared + [SHARED_LAYERS, "components/models/${item}.py"])


def sync_dvc_yaml(path: str | Path = ROOT / "dvc.yaml") -> bool:
    """Rewrite the code deps of every stage in ``path`` from the imports; whether it changed."""
    path = Path(path)
    lines, out, stage, in_deps = path.read_text().splitlines(), [], None, False
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if indent == 2 and line.rstrip().endswith(":") and not line.lstrip().startswith("-"):
            stage, in_deps = line.strip()[:-1], False
        if line.strip() == "deps:":
            out.append(line)
            out += [f"{' ' * (indent + 2)}- {f}" for f in stage_code(stage)]
            in_deps = True
            continue
        if in_deps and line.strip().startswith("- "):
            if line.strip()[2:].startswith(("components/", "pipelines/")):
                continue
        elif in_deps:
            in_deps = False
        out.append(line)
    text = "\n".join(out) + "\n"
    changed = text != path.read_text()
    path.write_text(text)
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m components.codehash MODULE...``: the files the modules import, as
    dvc.yaml deps; ``--sync``: rewrite dvc.yaml's code deps from the imports (what
    tests/test_contract.py checks)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args == ["--sync"]:
        print("dvc.yaml: code deps " + ("rewritten" if sync_dvc_yaml() else "already match the imports"))
        return 0
    for path in sorted({f for module in args for f in import_closure(module)}):
        print(f"      - {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
