"""The whole pipeline as a user runs it: `dvc repro` in a fresh copy of the
repository, on tiny params; then `dul search`; then a second `dvc repro`
that has nothing to do."""

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, write_params

BIN = Path(sys.executable).parent


def sh(*args, cwd, check=True, env=None):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """The project's files (tracked, and untracked but not ignored) in a new git repository."""
    copy = tmp_path_factory.mktemp("e2e") / "dul"
    files = sh("git", "ls-files", "-co", "--exclude-standard", cwd=REPO).stdout.split()
    produced = ("data/", "models/", "index/", "reports/", "dvc.lock")  # a user's first run starts from nothing
    for name in files:
        if (REPO / name).is_file() and not name.startswith(produced):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    write_params(copy)
    sh("git", "init", "-q", cwd=copy)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "init", "--allow-empty", cwd=copy)
    sh("git", "add", "-A", cwd=copy)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny params", cwd=copy)
    return copy


def user_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DUL_", "MLFLOW_", "RAY_ADDRESS", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return env


@pytest.fixture(scope="module")
def repro(repo_copy):
    return sh(str(BIN / "dvc"), "repro", cwd=repo_copy, env=user_env())


@pytest.mark.ray
def test_dvc_repro_produces_every_output(repo_copy, repro):
    for out in ("data/prepared/train.parquet", "data/prepared/card.json", "models/stack.pt",
                "models/autoencoder.pt", "index/codes.npz", "reports/evaluate/reconstructions.png",
                "reports/evaluate/learning_curves.png", "reports/evaluate/filters.png", "reports/pretrain/curve.csv",
                "reports/index/precision.csv"):
        assert (repo_copy / out).stat().st_size > 0, out
    metrics = json.loads((repo_copy / "reports/evaluate/metrics.json").read_text())
    assert metrics["code_size"] == 6 and metrics["test_squared_error_autoencoder"] > 0
    shown = sh(str(BIN / "dvc"), "metrics", "show", "--json", cwd=repo_copy, env=user_env()).stdout
    assert "test_squared_error_pca" in shown and "precision_at_5" in shown
    assert "Running stage 'pretrain'" in repro.stdout and "layer 2/2" in repro.stderr + repro.stdout


@pytest.mark.ray
def test_dvc_repro_trains_the_zoo_and_reports_its_likelihoods(repo_copy, repro):
    rows = json.loads((repo_copy / "reports/zoo/likelihood.json").read_text())
    assert {r["family"] for r in rows} == {"vae", "nade"}
    estimators = {r["family"]: r["estimator"] for r in rows}
    assert estimators == {"vae": "is-20", "nade": "exact"}
    assert all(r["nll_nats"] > 0 and r["stderr"] > 0 and r["binarization"] == "fixed" for r in rows)
    for family in ("vae", "nade"):
        assert (repo_copy / f"models/zoo/{family}.pt").stat().st_size > 0
        for picture in ("samples.png", "filters.png", "codes.png"):  # a picture, or a note why there is none
            assert (repo_copy / f"reports/zoo/families/{family}/{picture}").stat().st_size > 0
    assert 0 < json.loads((repo_copy / "reports/zoo/families/vae/metrics.json").read_text())["code_sparsity"] < 1
    assert "| family | NLL (nats)" in (repo_copy / "reports/zoo/likelihood.md").read_text()


@pytest.mark.ray
def test_dvc_repro_scores_every_sampler_between_real_data_and_the_mean_image(repo_copy, repro):
    rows = {r["family"]: r for r in json.loads((repo_copy / "reports/zoo/samples.json").read_text())}
    assert set(rows) == {"real-data", "mean-image", "vae", "nade"}
    assert rows["real-data"]["frechet"] < rows["mean-image"]["frechet"]
    assert json.loads((repo_copy / "reports/scorer/metrics.json").read_text())["test_accuracy"] > 0.5
    assert (repo_copy / "models/scorer.pt").stat().st_size > 0


@pytest.mark.ray
def test_dvc_repro_probes_the_features_of_every_encoder(repo_copy, repro):
    rows = json.loads((repo_copy / "reports/zoo/features.json").read_text())
    assert {r["family"] for r in rows} == {"pixels", "vae", "dbn", "deep-autoencoder", "pca-2", "pca-6"}
    assert next(r for r in rows if r["family"] == "pixels")["probe_accuracy"] > 0.9  # digits are nearly separable
    assert "features: pixels (64 features): test accuracy" in repro.stdout


def stale_stages(repo_copy) -> set[str]:
    status = json.loads(sh(str(BIN / "dvc"), "status", "--json", cwd=repo_copy, env=user_env()).stdout or "{}")
    return set(status)


@pytest.mark.ray
@pytest.mark.parametrize("touched, stale", [
    ("components/models/vae.py", {"train@vae"}),
    ("components/models/nade.py", {"train@nade"}),
    ("components/models/made.py", set()),  # not listed in these params: nothing of it ran
    ("components/training/loop.py", {"pretrain", "finetune", "train@vae", "train@nade"}),
])
def test_touching_a_family_stales_only_its_own_stage(repo_copy, repro, touched, stale):
    path = repo_copy / touched
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# touched\n")
        assert stale_stages(repo_copy) == stale
    finally:
        path.write_bytes(original)


@pytest.mark.ray
def test_second_repro_changes_nothing(repo_copy, repro):
    again = sh(str(BIN / "dvc"), "repro", cwd=repo_copy, env=user_env())
    assert "Running stage" not in again.stdout
    assert "Data and pipelines are up to date." in again.stdout


@pytest.mark.ray
def test_stages_are_grouped_runs_in_mlflow(repo_copy, repro):
    client = MlflowClient(f"sqlite:///{repo_copy / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dul").experiment_id])
    parents = [r for r in runs if r.data.tags.get("dul.role") == "pipeline"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.info.run_name for r in children) == ["evaluate", "features", "finetune", "index", "ingest",
                                                          "pretrain", "samples", "scorer", "train@nade", "train@vae",
                                                          "zoo"]
    commit = sh("git", "rev-parse", "HEAD", cwd=repo_copy).stdout.strip()
    assert all(r.data.tags["git.commit"] == commit and r.info.status == "FINISHED" for r in children)
    lock = (repo_copy / "dvc.lock").read_text()
    pretrain = next(r for r in children if r.info.run_name == "pretrain")
    assert pretrain.data.tags["dvc.outs.models/stack.pt"] in lock  # the md5 dvc.lock records
    assert pretrain.data.tags["dvc.deps.data/prepared"] in lock  # a folder: DVC's .dir hash


@pytest.mark.ray
def test_readme_search_command_answers(repo_copy, repro):
    out = sh(str(BIN / "dul"), "search", "--index", "index/codes.npz", "--item", "0", "-k", "10",
             cwd=repo_copy, env=user_env()).stdout
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+\s+\d+\s+(train|validation|test)\s", line)]
    assert out.startswith("query: item 0") and len(rows) == 10


@pytest.mark.ray
def test_misspelled_param_fails_the_stage_with_one_line(repo_copy, repro):
    params = repo_copy / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("index:\n  k: 5", "index:\n  kk: 5"))
        failed = sh(str(BIN / "dvc"), "repro", cwd=repo_copy, env=user_env(), check=False)
        assert failed.returncode != 0
        assert "error: index.kk: unknown key; did you mean 'k'?" in failed.stderr
    finally:
        params.write_text(original)


@pytest.mark.ray
def test_outputs_dvc_removed_before_a_failed_stage_come_back_with_dvc_checkout(repo_copy, repro):
    """DVC deletes a stage's outputs before running it, so a failed stage leaves none;
    the previous ones are in DVC's cache: `dvc checkout` restores them (README says so;
    metrics and plots with `cache: false` come back from git, where they are committed)."""
    params = repo_copy / "params.yaml"
    original = params.read_text()
    before = {p.name: p.read_bytes() for p in (repo_copy / "data/prepared").iterdir()}
    stale_before = stale_stages(repo_copy)  # (an earlier test's failed stage may have left one)
    try:
        params.write_text(original.replace("ingest:\n  dataset: digits", "ingest:\n  dataset: mnsit"))
        failed = sh(str(BIN / "dvc"), "repro", cwd=repo_copy, env=user_env(), check=False)
        assert failed.returncode != 0 and "error: unknown dataset 'mnsit'" in failed.stderr
        assert not (repo_copy / "data/prepared").exists()
    finally:
        params.write_text(original)
    sh(str(BIN / "dvc"), "checkout", cwd=repo_copy, env=user_env())
    assert {p.name: p.read_bytes() for p in (repo_copy / "data/prepared").iterdir()} == before
    assert stale_stages(repo_copy) == stale_before


@pytest.mark.ray
def test_a_param_change_reruns_only_the_stages_it_reaches(repo_copy, repro):
    """Last in this module (it adds pipeline runs). A changed ingest param re-runs
    ingest; the digits images do not depend on it, so data/prepared keeps its
    hash and nothing downstream runs. A changed index param re-runs index only."""
    params = repo_copy / "params.yaml"
    original = params.read_text()
    try:
        assert "  vocabulary_size: 2000\n" in original
        params.write_text(original.replace("  vocabulary_size: 2000\n", "  vocabulary_size: 1000\n"))
        ran = sh(str(BIN / "dvc"), "repro", cwd=repo_copy, env=user_env()).stdout
        assert re.findall(r"Running stage '(\w+)'", ran) == ["ingest"], ran
        params.write_text(params.read_text().replace("index:\n  k: 5", "index:\n  k: 7"))
        ran = sh(str(BIN / "dvc"), "repro", cwd=repo_copy, env=user_env()).stdout
        assert re.findall(r"Running stage '(\w+)'", ran) == ["index"], ran
        assert "precision_at_7" in (repo_copy / "reports/index/metrics.json").read_text()
    finally:
        params.write_text(original)
