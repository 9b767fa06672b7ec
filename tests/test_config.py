"""params.yaml is strict: unknown keys, wrong types and impossible values are errors naming the key."""

import pytest
import yaml

from components.config import SECTIONS, load_params, parse_section
from components.errors import DulError
from tests.conftest import REPO


def test_the_repository_params_parse():
    for section in SECTIONS:
        load_params(section, REPO / "params.yaml")


def test_params_file_sets_every_key_of_every_section():
    # params.yaml is the single source of truth: no knob hides in a code default.
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, cls in SECTIONS.items():
        assert set(raw[section]) == set(cls.__dataclass_fields__), section


def test_the_committed_params_are_the_code_defaults():
    # One source of defaults: an empty section runs exactly what params.yaml says. zoo.families is
    # not a default but the list of what to train (adding a family lists it in params.yaml only).
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section in SECTIONS:
        listed = {"families": raw[section]["families"]} if section == "zoo" else {}
        assert parse_section(section, listed) == parse_section(section, raw[section]), section


def test_nan_in_yaml_is_refused_by_name(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("finetune:\n  code_noise: .nan\n")
    with pytest.raises(DulError, match=r"finetune\.code_noise is nan"):
        load_params("finetune", path)


@pytest.mark.parametrize("section, values, message", [
    ("pretrain", {"hiden": [10]}, r"pretrain\.hiden: unknown key; did you mean 'hidden'\?"),
    ("pretrain", {"hidden": [64, 0, 10]}, r"pretrain\.hidden\[1\] is 0"),
    ("pretrain", {"hidden": []}, r"pretrain\.hidden"),
    ("pretrain", {"epochs": "ten"}, r"pretrain\.epochs: expected int"),
    ("pretrain", {"epochs": True}, r"pretrain\.epochs: expected int"),
    ("pretrain", {"lr": -0.1}, r"pretrain\.lr is -0\.1: must be positive"),
    ("pretrain", {"code_units": "gaussian"}, r"pretrain\.code_units is 'gaussian'"),
    ("finetune", {"optimizer": "adamw"}, r"finetune\.optimizer is 'adamw'; did you mean 'adam'\?"),
    ("ingest", {"validation_fraction": 1.5}, r"ingest\.validation_fraction is 1\.5"),
    ("ingest", {"topics": "R80"}, r"ingest\.topics is 'R80'; did you mean 'R8'\?"),
    ("ingest", {"rcv1_split": "halves"}, r"ingest\.rcv1_split is 'halves'; choose one of: lyrl2004, random"),
    ("ingest", {"dataset": "mnist", "remove": ["headers"]}, r"ingest\.remove applies to 20newsgroups only"),
    ("index", {"k": 0}, r"index\.k is 0"),
    ("pretrain", {"weight_decay": -5.0}, r"pretrain\.weight_decay is -5\.0: must be 0 or more"),
    ("pretrain", {"momentum_initial": -0.5}, r"pretrain\.momentum_initial is -0\.5"),
    ("pretrain", {"lr": float("inf")}, r"pretrain\.lr is inf: must be a finite number"),
    ("finetune", {"code_noise": float("nan")}, r"finetune\.code_noise is nan: must be a finite number"),
    ("finetune", {"momentum": -0.9}, r"finetune\.momentum is -0\.9"),
    ("ingest", {"validation_fraction": 0}, r"ingest\.validation_fraction is 0: the validation split would be empty"),
])
def test_bad_values_name_the_key(section, values, message):
    with pytest.raises(DulError, match=message):
        parse_section(section, values)


def test_unknown_section_is_an_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("pretrian:\n  epochs: 3\n")
    with pytest.raises(DulError, match="unknown section 'pretrian'; did you mean 'pretrain'"):
        load_params("pretrain", path)


def test_ints_are_accepted_for_floats_and_lists_become_tuples():
    params = parse_section("pretrain", {"lr": 1, "hidden": [8, 4]})
    assert params.lr == 1.0 and isinstance(params.lr, float) and params.hidden == (8, 4)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("pretrain: [unclosed\n")
    with pytest.raises(DulError, match="params.yaml: not valid YAML"):
        load_params("pretrain", path)
