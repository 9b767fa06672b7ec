"""dvc.yaml declares exactly what each stage reads: its params, its script, every
file it imports (transitively: ``components.codehash.import_closure``) and its
data; a zoo family's stage depends on its own model file and the shared code,
never on another family's file, so adding or changing a family leaves the
others' results valid."""

import importlib
from pathlib import Path

import pytest
import yaml

from components.codehash import import_closure
from components.models.registry import FAMILIES, ZOO_FAMILIES
from tests.conftest import REPO

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
PLAIN = [name for name, stage in DVC.items() if "foreach" not in stage]
REGISTRY = "components/models/registry.py"  # the name table: a stage depends on its family's module, not on the table
SHARED_LAYERS = "components/models/nn"  # layers the families share (masked linear, ...): one folder dep


def zoo_shared() -> set[str]:
    """The files every zoo stage depends on: what pipelines/train.py imports but the
    registry's table, and the shared layers."""
    layers = {p.relative_to(REPO).as_posix() for p in (REPO / SHARED_LAYERS).rglob("*.py")}
    return set(import_closure("pipelines.train")) - {REGISTRY} | layers


def code_deps(stage: dict) -> set[str]:
    return {d for d in stage["deps"] if d.startswith(("components", "pipelines"))}


# the feature report probes the families zoo.families lists, on the zoo's binarization
ALSO_READS = {"features": ["zoo"], "scorer": ["zoo"], "samples": ["zoo"]}  # (the last two: the zoo's binarization)


@pytest.mark.parametrize("stage", PLAIN)
def test_stage_declares_its_params_section_only(stage):
    assert DVC[stage]["params"] == [stage, *ALSO_READS.get(stage, [])]
    assert DVC[stage]["cmd"] == f"python -m pipelines.{stage}"


@pytest.mark.parametrize("stage", PLAIN)
def test_stage_code_deps_are_the_files_it_imports(stage):
    expected = set(import_closure(f"pipelines.{stage}"))
    declared = code_deps(DVC[stage])
    assert declared == expected, (f"dvc.yaml stage {stage}: missing {sorted(expected - declared)}, "
                                  f"not imported {sorted(declared - expected)}; "
                                  "rewrite them with: python -m components.codehash --sync")


def family_module(family: str) -> str:
    return FAMILIES[family].partition(":")[0]


def test_the_zoo_stage_runs_every_listed_family_through_one_script():
    train = DVC["train"]
    assert train["foreach"] == "${zoo.families}"
    assert train["do"]["cmd"] == "python -m pipelines.train ${item}"
    assert "${item}" in train["do"]["params"]
    assert "zoo.families" not in train["do"]["params"]  # listing another family must not stale this one


def test_the_zoo_stage_deps_are_the_shared_code_and_the_familys_own_file():
    declared = {d for d in code_deps(DVC["train"]["do"]) if "${item}" not in d}
    shared = set(import_closure("pipelines.train")) - {REGISTRY} | {SHARED_LAYERS}
    assert declared == shared, (f"missing {sorted(shared - declared)}, not imported {sorted(declared - shared)}")
    assert "components/models/${item}.py" in DVC["train"]["do"]["deps"]


def test_a_variant_stage_is_the_train_stage_keyed_by_the_variants_name():
    """variant@<name> (zoo.variants: name -> family) runs the same script on the variant's own
    section and files, and depends on its family's file: ${key} is the name, ${item} the family."""
    variant, train = DVC["variant"], DVC["train"]
    assert variant["foreach"] == "${zoo.variants}"
    assert variant["do"]["cmd"] == "python -m pipelines.train ${key}"
    assert variant["do"]["deps"] == train["do"]["deps"]  # components/models/${item}.py: the family's file
    as_train = yaml.safe_dump(variant["do"]).replace("${key}", "${item}")
    assert yaml.safe_load(as_train) == {**train["do"], "cmd": "python -m pipelines.train ${item}"}
    assert {"zoo": {"variants": {}}} in yaml.safe_load((REPO / "dvc.yaml").read_text())["vars"]  # the default


@pytest.mark.parametrize("family", ZOO_FAMILIES)
def test_a_family_imports_only_its_own_file_and_shared_code(family):
    """Touching one family's file stales that family's stage only: no family imports another's."""
    own = f"{family_module(family).replace('.', '/')}.py"
    assert own == f"components/models/{family}.py"
    outside = set(import_closure(family_module(family))) - zoo_shared() - {own}
    assert not outside, f"{family} imports {sorted(outside)}: move shared code to components/models/nn/"


@pytest.mark.parametrize("stage", PLAIN)
def test_stage_paths_are_declared(stage):
    module = importlib.import_module(f"pipelines.{stage}")
    declared = list(DVC[stage].get("deps", []))
    for entry in DVC[stage].get("outs", []) + DVC[stage].get("metrics", []) + DVC[stage].get("plots", []):
        declared += list(entry) if isinstance(entry, dict) else [entry]
    paths = [v for v in vars(module).values() if isinstance(v, Path)]
    paths += [p for v in vars(module).values() if isinstance(v, dict) for p in v.values() if isinstance(p, Path)]
    for path in paths:
        assert any(d == path.as_posix() or d.startswith(path.as_posix() + "/") for d in declared), path
