"""The README is code: its two commands, its params reference, its search and serve examples and its links."""

import re
from pathlib import Path

import pytest

from components import params_doc
from components.cli import main as dul
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
BASH = [block.strip() for block in re.findall(r"```bash\n(.*?)\n\s*```", README, flags=re.S)]
DOCS = ["README.md", "docs/results/README.md", "benchmarks/README.md", "docs/params.md"]


def test_ci_runs_the_readme_test_command():
    test_command = next(block for block in BASH if "pytest" in block)
    ci_lines = (REPO / ".ci/run").read_text().strip().splitlines()
    assert ci_lines[-1] == test_command


def test_main_command_sets_up_and_runs_the_pipeline():
    main_command = BASH[0]
    assert main_command.startswith("python3 -m venv .venv") and main_command.endswith("&& dvc repro")


def test_params_reference_is_the_one_generated_from_the_code():
    assert params_doc.documented((REPO / "docs/params.md").read_text()) == params_doc.reference().strip("\n"), \
        "docs/params.md is stale: put the output of `dul params` between its markers"


def test_search_example_is_a_valid_command(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no index here: the command must name the missing file
    example = next(block for block in BASH if block.strip().startswith("dul search")).split()[1:]
    with pytest.raises(SystemExit) as help_exit:
        dul([*example, "--help"])
    assert help_exit.value.code == 0
    assert dul(example) == 2
    assert example[example.index("--index") + 1] in capsys.readouterr().err


def test_serve_example_is_a_valid_command(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no index here: the command must name the missing folder before listening
    example = next(block for block in BASH if block.strip().startswith("dul serve")).split()[1:]
    with pytest.raises(SystemExit) as help_exit:
        dul([*example, "--help"])
    assert help_exit.value.code == 0 and "no authentication" in capsys.readouterr().out
    assert dul(example) == 2
    assert example[example.index("--index") + 1] in capsys.readouterr().err


def links(text: str) -> list[str]:
    """The targets of the Markdown links and images in ``text``, outside code blocks and spans."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_and_image_points_to_an_existing_file(doc):
    path = REPO / doc
    targets = [t for t in links(path.read_text()) if not re.match(r"[a-z]+:", t)]
    assert targets, f"{doc} has no relative links: the link pattern is wrong"
    for target in targets:
        file, _, anchor = target.partition("#")
        found = (path.parent / file).resolve() if file else path
        assert found.exists(), f"{doc}: {target} points to {found}, which does not exist"
        if anchor and found.suffix == ".md":
            assert anchor in anchors(found), f"{doc}: {target}: no heading in {found.name} makes #{anchor}"


def test_the_link_check_sees_a_broken_link_and_a_broken_anchor():
    assert links("![a](x/y.png) [b](../z.md#h) `[c](code)` [d](https://e)") == ["x/y.png", "../z.md#h", "https://e"]
    assert slug("autoencoder_2d.py") == "autoencoder_2dpy"
    assert slug("Fashion-MNIST or MNIST with the paper's 784-1000-500-250-30 network") == \
        "fashion-mnist-or-mnist-with-the-papers-784-1000-500-250-30-network"
