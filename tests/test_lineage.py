"""`dul lineage`: on a tiny three-stage DVC pipeline run for real in a temporary
git repository (ingest -> train -> score, a folder and two files), and on this
repository's committed dvc.lock."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from components.cli import main
from tests.conftest import REPO

BIN = Path(sys.executable).parent

SCRIPTS = {
    "ingest.py": """
        import hashlib, json, os, yaml
        n = yaml.safe_load(open("params.yaml"))["ingest"]["n"]
        os.makedirs("data", exist_ok=True)
        text = "".join(f"{i}\\n" for i in range(n))
        open("data/values.txt", "w").write(text)
        files = [{"name": "values.txt", "sha256": hashlib.sha256(text.encode()).hexdigest(), "verified": True}]
        json.dump({"dataset": "toy", "source": "generated", "files": files}, open("data/card.json", "w"))
    """,
    "train.py": """
        import yaml
        scale = yaml.safe_load(open("params.yaml"))["train"]["scale"]
        values = [int(v) * scale for v in open("data/values.txt").read().split()]
        open("model.txt", "w").write(f"{sum(values)}\\n")
    """,
    "score.py": """
        import yaml
        offset = yaml.safe_load(open("params.yaml"))["score"]["offset"]
        open("score.txt", "w").write(f"{int(open('model.txt').read()) + offset}\\n")
    """,
}
DVC_YAML = {"stages": {
    "ingest": {"cmd": "python ingest.py", "deps": ["ingest.py"], "params": ["ingest"], "outs": ["data"]},
    "train": {"cmd": "python train.py", "deps": ["train.py", "data"], "params": ["train"], "outs": ["model.txt"]},
    "score": {"cmd": "python score.py", "deps": ["score.py", "model.txt"], "params": ["score"], "outs": ["score.txt"]},
}}


def sh(*args, cwd, env=None):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def commit(repo: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, cwd=repo)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("lineage") / "toy"
    repo.mkdir()
    for name, text in SCRIPTS.items():
        (repo / name).write_text(textwrap.dedent(text))
    params = {"ingest": {"n": 5}, "train": {"scale": 3}, "score": {"offset": 7}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_", "DUL_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    sh("git", "init", "-q", cwd=repo)
    sh(str(BIN / "dvc"), "init", "-q", cwd=repo, env=env)
    sh(str(BIN / "dvc"), "config", "core.analytics", "false", cwd=repo, env=env)
    commit(repo, "pipeline")
    sh(str(BIN / "dvc"), "repro", "-q", cwd=repo, env=env)
    commit(repo, "dvc.lock")
    return repo


@pytest.fixture
def in_toy(toy, tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(toy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}")
    monkeypatch.delenv("DUL_EXPERIMENT", raising=False)
    return toy


def dul(capsys, *args) -> tuple[int, str, str]:
    status = main(["lineage", *args])
    out, err = capsys.readouterr()
    return status, out, err


def lock_outs(repo: Path) -> dict[str, str]:
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage["outs"]}


def test_tree_names_every_stage_back_to_the_first(in_toy, capsys):
    status, out, _ = dul(capsys, "score.txt")
    assert status == 0
    for line in ("stage score: python score.py", "stage train: python train.py", "stage ingest: python ingest.py",
                 "params: score.offset=7", "params: train.scale=3", "params: ingest.n=5",
                 "card: toy from generated", "values.txt: sha256 "):
        assert line in out, line
    assert out.index("score.txt") < out.index("model.txt") < out.index("data  md5")
    assert "no MLflow store" in out  # an absent store is a note, not an error


def test_json_has_dvc_lock_hashes_and_commit(in_toy, capsys):
    status, out, _ = dul(capsys, "score.txt", "--format", "json")
    doc = json.loads(out)
    assert status == 0 and [n["path"] for n in doc["nodes"]] == ["score.txt", "model.txt", "data"]
    assert {n["path"]: n["md5"] for n in doc["nodes"]} == lock_outs(in_toy)
    assert doc["nodes"][2]["md5"].endswith(".dir") and doc["nodes"][2]["card"]["files"][0]["verified"] is True
    assert doc["nodes"][1]["params"] == {"params.yaml": {"train": {"scale": 3}}}
    lock_commit = sh("git", "log", "-1", "--format=%H", "--", "dvc.lock", cwd=in_toy).strip()
    assert {n["commit"] for n in doc["nodes"]} == {lock_commit} and doc["git"]["dvc_lock_modified"] is False


def test_verify_passes_then_names_a_changed_middle_output(in_toy, capsys):
    status, out, _ = dul(capsys, "score.txt", "--verify", "--format", "json")
    assert status == 0 and json.loads(out)["verified"] is True
    model = in_toy / "model.txt"
    original = model.read_bytes()
    try:
        model.write_bytes(original[:-1] + b"9")  # one byte
        status, out, _ = dul(capsys, "score.txt", "--verify")
    finally:
        model.write_bytes(original)
    assert status == 1
    lock = lock_outs(in_toy)["model.txt"]
    assert "model.txt: md5 on disk" in out and f"differs from dvc.lock {lock}; run `dvc repro`" in out
    assert next(line for line in out.splitlines() if line.startswith("score.txt  md5")).endswith("[ok]")


def test_verify_names_a_missing_output_and_a_changed_folder(in_toy, capsys):
    values = in_toy / "data" / "values.txt"
    original = values.read_bytes()
    (in_toy / "model.txt").rename(in_toy / "model.txt.bak")
    try:
        values.write_bytes(original + b"\n")
        status, out, _ = dul(capsys, "score.txt", "--verify", "--format", "json")
    finally:
        (in_toy / "model.txt.bak").rename(in_toy / "model.txt")
        values.write_bytes(original)
    doc = json.loads(out)
    assert status == 1 and {n["path"]: n["verify"]["status"] for n in doc["nodes"]} == {
        "score.txt": "ok", "model.txt": "missing", "data": "changed"}
    assert any(p.startswith("model.txt: missing on disk") for p in doc["problems"])


def test_verify_names_a_stage_that_ran_on_an_older_input(in_toy, capsys):
    lock_path = in_toy / "dvc.lock"
    original = lock_path.read_text()
    lock = yaml.safe_load(original)
    lock["stages"]["train"]["outs"][0]["md5"] = "0" * 32  # as if train re-ran and score did not
    try:
        lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))
        status, out, _ = dul(capsys, "score.txt", "--verify")
    finally:
        lock_path.write_text(original)
    assert status == 1
    assert "score.txt: stale: stage score ran on model.txt md5" in out and "run `dvc repro score`" in out


def test_a_file_inside_a_folder_output_resolves_to_the_folder(in_toy, capsys):
    status, out, _ = dul(capsys, "data/card.json", "--format", "json")
    assert status == 0 and json.loads(out)["nodes"][0]["note"] == "data/card.json is inside data"


def test_unknown_target_suggests_the_outputs(in_toy, capsys):
    status, _, err = dul(capsys, "model.tx")
    assert status == 2 and err.startswith("error: unknown target 'model.tx'") and "did you mean 'model.txt'?" in err
    assert err.count("\n") == 1


def test_no_dvc_lock_is_an_error(tmp_path, monkeypatch, capsys):
    sh("git", "init", "-q", cwd=tmp_path)
    sh(str(BIN / "dvc"), "init", "-q", cwd=tmp_path)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    monkeypatch.chdir(tmp_path)
    status, _, err = dul(capsys, "models/stack.pt")
    assert status == 2 and err.startswith("error: no dvc.lock in") and "run `dvc repro`" in err


def test_unreachable_store_is_an_error(in_toy, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    status, _, err = dul(capsys, "score.txt")
    assert status == 2 and "MLflow tracking server http://127.0.0.1:9 is unreachable" in err and "--no-mlflow" in err


@pytest.fixture(scope="module")
def tracked(toy, tmp_path_factory) -> dict:
    """A stage run for `train` in a fresh sqlite store, tagged as the stages tag theirs."""
    from mlflow.tracking import MlflowClient

    from components.tracking import stage_run

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    cwd, saved = os.getcwd(), dict(os.environ)
    os.chdir(toy)
    os.environ.update(MLFLOW_TRACKING_URI=uri, DUL_RUN_GROUP="toy")
    try:
        with stage_run("train", {"scale": 3}, deps=["data", "train.py"], root=toy) as run:
            run.tag_files("outs", ["model.txt"])
        client = MlflowClient(uri)
        client.create_registered_model("toy")
        client.create_model_version("toy", f"runs:/{run.run_id}/model", run_id=run.run_id)
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
    return {"uri": uri, "run_id": run.run_id}


def test_mlflow_run_found_by_output_hash_run_id_and_model(in_toy, tracked, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked["uri"])
    doc = json.loads(dul(capsys, "score.txt", "--format", "json")[1])
    runs = {n["path"]: [r["run_id"] for r in n["mlflow_runs"]] for n in doc["nodes"]}
    assert runs == {"score.txt": [], "model.txt": [tracked["run_id"]], "data": []}
    by_run = json.loads(dul(capsys, tracked["run_id"], "--format", "json")[1])
    assert [n["path"] for n in by_run["nodes"]] == ["model.txt", "data"]
    assert by_run["nodes"][0]["note"] == f"run {tracked['run_id']} is stage train"
    status, out, _ = dul(capsys, "models:/toy/1")
    assert status == 0 and out.splitlines()[1].startswith("model.txt  md5") and f"mlflow run {tracked['run_id']}" in out
    status, _, err = dul(capsys, "models:/toy/7")
    assert status == 2 and "registered model models:/toy/7 not found" in err


def test_real_repository_lineage_from_its_dvc_lock(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(REPO)
    _, out, _ = dul(capsys, "index/codes.npz", "--format", "json", "--no-mlflow", "--verify")  # 1 if code changed
    doc = json.loads(out)
    assert [n["stage"] for n in doc["nodes"]] == ["index", "ingest", "finetune", "pretrain"]
    assert {n["path"]: n["md5"] for n in doc["nodes"]} == {p: m for p, m in lock_outs(REPO).items()
                                                          if p in {n["path"] for n in doc["nodes"]}}
    assert doc["nodes"][1]["params"]["params.yaml"]["ingest"]["dataset"]
    lock_clean = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "dvc.lock"], cwd=REPO, check=False).returncode == 0
    present = [n for n in doc["nodes"] if n["verify"]["md5_on_disk"] != "missing"]
    if not (present and lock_clean):
        pytest.skip("outputs absent or dvc.lock modified: nothing to compare on disk")
    assert all(n["verify"]["md5_on_disk"] == n["md5"] for n in present)  # our hashes are DVC's, .dir included


def test_help_explains_the_target_forms(capsys):
    with pytest.raises(SystemExit):
        main(["lineage", "--help"])
    out = capsys.readouterr().out
    assert "models:/NAME/VERSION" in out and "MLflow run id" in out and "dul lineage index/codes.npz --verify" in out
