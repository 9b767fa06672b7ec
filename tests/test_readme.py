"""The README is code: its two commands, its params reference and its search example."""

import re

import pytest

from components.cli import main as dul
from components.config import SECTIONS
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
BASH = [block.strip() for block in re.findall(r"```bash\n(.*?)\n\s*```", README, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    test_command = next(block for block in BASH if "pytest" in block)
    ci_lines = (REPO / ".ci/run").read_text().strip().splitlines()
    assert ci_lines[-1] == test_command


def test_main_command_sets_up_and_runs_the_pipeline():
    main_command = BASH[0]
    assert main_command.startswith("python3 -m venv .venv") and main_command.endswith("&& dvc repro")


def test_params_reference_names_every_key():
    documented = set(re.findall(r"`(\w+)\.(\w+)`", README))
    documented |= {(s, k) for s, rest in re.findall(r"`(\w+)\.momentum_initial`, (.*?) \|", README)
                   for k in re.findall(r"`(\w+)`", rest)}
    for section, cls in SECTIONS.items():
        for key in cls.__dataclass_fields__:
            assert (section, key) in documented, f"README params reference lacks {section}.{key}"


def test_search_example_is_a_valid_command(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no index here: the command must name the missing file
    example = next(block for block in BASH if block.strip().startswith("dul search")).split()[1:]
    with pytest.raises(SystemExit) as help_exit:
        dul([*example, "--help"])
    assert help_exit.value.code == 0
    assert dul(example) == 2
    assert example[example.index("--index") + 1] in capsys.readouterr().err
