"""The params reference is generated from the code (components/params_doc.py): every
field of every section and zoo family has a row with its default and its comment, a
field without a comment is an error naming it, and `dul params --check` catches a
README that no longer matches."""

from __future__ import annotations

import dataclasses
import re

import pytest

from components import params_doc
from components.cli import main as dul
from components.config import SECTIONS
from components.models.registry import ZOO_FAMILIES, params_class
from tests.conftest import REPO

ALL = [*SECTIONS.items(), *((family, params_class(family)) for family in ZOO_FAMILIES)]


@dataclasses.dataclass(frozen=True)
class Base:
    """A base section: its fields come first."""

    a: int = 1  # from the base


@dataclasses.dataclass(frozen=True)
class Child(Base):
    """A child section.

    Only the first paragraph is the intro.
    """

    b: str = "x"  # first line,
    # continued on the next | with a pipe
    c: tuple[float, ...] = (0.5, 2.0)  # a <list> shown as YAML
    d: dict = dataclasses.field(default_factory=lambda: {"k": None})  # a mapping
    e: bool = True  # a flag

    # a free-standing comment after a blank line belongs to nobody


@dataclasses.dataclass(frozen=True)
class Undocumented(Base):
    documented: int = 0  # what it is
    bare: float = 0.1


def test_every_field_of_every_section_and_family_has_a_row_with_its_default():
    from components.models.registry import ZOO_FAMILIES

    text = params_doc.reference() + "".join(params_doc.family_reference(f) for f in ZOO_FAMILIES)
    assert params_doc.reference(ZOO_FAMILIES) == params_doc.reference() + "\n" + "\n".join(
        params_doc.family_reference(f) for f in ZOO_FAMILIES)
    rows = re.findall(r"^\| `(\w[\w-]*)\.(\w+)` \| `(.*?)` \| (.+) \|$", text, flags=re.M)
    assert len(rows) == sum(len(dataclasses.fields(cls)) for _, cls in ALL)
    by_key = {(section, key): default for section, key, default, _ in rows}
    for section, cls in ALL:
        assert f"### `{section}`" in text
        for field in dataclasses.fields(cls):
            default = params_doc.yaml_value(params_doc.default(field)).replace("|", "\\|")
            assert by_key[section, field.name] == default, f"{section}.{field.name}"


def test_defaults_are_written_as_yaml_writes_them():
    values = [None, True, "auto", 0.0002, (256, 128), (), {"finetune.lr": {"loguniform": [1.0e-4, 1.0e-2]}}]
    assert [params_doc.yaml_value(v) for v in values] == \
        ["null", "true", "auto", "0.0002", "[256, 128]", "[]", "{finetune.lr: {loguniform: [0.0001, 0.01]}}"]


def test_a_row_holds_the_fields_comment_with_its_continuation_and_inherited_fields_first():
    assert params_doc.field_comments(Child) == {
        "a": "from the base", "b": "first line, continued on the next | with a pipe",
        "c": "a <list> shown as YAML", "d": "a mapping",
        "e": "a flag"}
    table = params_doc.section_table("child", Child)
    assert table.splitlines() == [
        "### `child`", "", "A child section.", "",
        "| key | default | what it is |", "|---|---|---|",
        "| `child.a` | `1` | from the base |",
        "| `child.b` | `x` | first line, continued on the next \\| with a pipe |",
        "| `child.c` | `[0.5, 2.0]` | a \\<list> shown as YAML |",
        "| `child.d` | `{k: null}` | a mapping |",
        "| `child.e` | `true` | a flag |"]


def test_a_field_without_a_comment_is_an_error_that_names_it():
    with pytest.raises(ValueError, match=r"Undocumented\.bare has no comment"):
        params_doc.field_comments(Undocumented)
    with pytest.raises(ValueError, match=r"Undocumented\.bare"):
        params_doc.section_table("undocumented", Undocumented)


def test_dul_params_prints_the_reference(capsys):
    assert dul(["params"]) == 0
    assert capsys.readouterr().out == params_doc.reference()


def test_check_passes_on_the_readme_and_fails_on_a_changed_default(tmp_path, capsys):
    assert dul(["params", "--check", str(REPO / "docs/params.md")]) == 0
    assert capsys.readouterr().err == ""
    readme = (REPO / "docs/params.md").read_text()
    row = "| `pretrain.lr` | `0.1` |"
    assert readme.count(row) == 1
    changed = tmp_path / "README.md"
    changed.write_text(readme.replace(row, "| `pretrain.lr` | `0.2` |"))
    assert dul(["params", "--check", str(changed)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(changed) in err and "pretrain.lr" in err


def test_check_without_markers_says_where_the_reference_goes(tmp_path, capsys):
    bare = tmp_path / "README.md"
    bare.write_text("# no reference here\n")
    assert dul(["params", "--check", str(bare)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and params_doc.BEGIN in err
