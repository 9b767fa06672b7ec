"""Lineage tags: what counts as dirty code, and one parent run per pipeline run."""

import subprocess

from components.tracking import content_md5, git_state, run_group


def git(folder, *args):
    subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)


def test_dvc_own_writes_do_not_make_the_tree_dirty(tmp_path, monkeypatch):
    monkeypatch.delenv("DUL_RUN_GROUP", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    for name in ("code.py", "dvc.lock", "data/.gitignore", "reports/metrics.json", "params.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    commit, dirty = git_state(tmp_path)
    before = run_group(tmp_path, commit)
    for name in ("dvc.lock", "data/.gitignore", "reports/metrics.json"):  # what `dvc repro` rewrites
        (tmp_path / name).write_text("2\n")
    assert git_state(tmp_path) == (commit, False)
    assert run_group(tmp_path, commit) == before  # every stage joins the same parent
    (tmp_path / "code.py").write_text("2\n")
    assert git_state(tmp_path) == (commit, True)


def test_outside_git_is_unknown_and_dirty(tmp_path):
    assert git_state(tmp_path) == ("unknown", True)


def test_folder_hash_has_dvc_form(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    assert content_md5(tmp_path / "a").endswith(".dir") and content_md5(tmp_path / "missing") == "missing"
