"""A real MLflow tracking server on loopback (sqlite backend, artifacts served
from a folder): one tiny pipeline run against it, then what the server holds
(runs, params, metrics, artifacts, registered models, lineage); and a server
that is not there, which stops every stage at once."""

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from components.cli import main as dul
from components.data import read_split
from pipelines import evaluate, finetune, index, ingest, pretrain
from tests.conftest import REPO, write_params

STAGES = {"ingest": ingest, "pretrain": pretrain, "finetune": finetune, "evaluate": evaluate, "index": index}
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there


class Server:
    """``mlflow server`` in its own process group, on a free loopback port."""

    def __init__(self, folder: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.uri, self.artifacts, self.log = f"http://127.0.0.1:{self.port}", folder / "artifacts", folder / "server.log"
        command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                   str(self.port), "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                   "--artifacts-destination", str(self.artifacts)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job-runner processes: nothing here uses them
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=folder, start_new_session=True)

    def wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mlflow server exited {self.process.returncode}:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.25)
        pytest.fail(f"mlflow server not healthy after {timeout} s:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pipeline(server, tmp_path_factory, request):
    """The five stages, in-process, against the server; what they printed and how long each took."""
    folder = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name in ("RAY_ADDRESS", "DUL_MODEL_PREFIX", "DUL_EXPERIMENT", "DVC_EXP_NAME"):
            patch.delenv(name, raising=False)
        patch.setenv("DUL_RAY_STORAGE", str(folder / "ray_results"))
        patch.setenv("DUL_RUN_GROUP", "server")
        patch.setenv("MLFLOW_TRACKING_URI", server.uri)
        request.getfixturevalue("ray_instance")  # Ray starts while the server does
        server.wait()
        # one epoch each, and no AIS (most of evaluate's time): this is about tracking
        write_params(folder, {"pretrain": {"epochs": 1}, "finetune": {"epochs": 1}, "evaluate": {"ais_chains": 0}})
        printed, seconds = {}, {}
        for name, stage in STAGES.items():
            start, out = time.perf_counter(), io.StringIO()
            with contextlib.redirect_stdout(out):
                status = stage.main(["--params", str(folder / "params.yaml")])
            printed[name], seconds[name] = out.getvalue(), time.perf_counter() - start
            assert status == 0, f"stage {name} failed: {printed[name]}"
        print("".join(printed.values()) + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
        yield {"folder": folder, "uri": server.uri, "printed": printed, "seconds": seconds}


@pytest.fixture(scope="module")
def runs(pipeline) -> dict:
    client = MlflowClient(pipeline["uri"])
    experiment = client.get_experiment_by_name("dul")
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


@pytest.mark.ray
def test_stages_are_child_runs_with_params_and_metrics(pipeline, runs):
    client = MlflowClient(pipeline["uri"])
    assert client.get_experiment_by_name("dul").artifact_location.startswith("mlflow-artifacts:")
    assert set(runs) == {"pipeline server", *STAGES}
    parent = runs["pipeline server"].info.run_id
    for name in STAGES:
        assert runs[name].info.status == "FINISHED" and runs[name].data.tags["mlflow.parentRunId"] == parent
    assert runs["pretrain"].data.params["hidden"] == "[24, 6]" and runs["index"].data.params["k"] == "5"
    assert runs["ingest"].data.metrics["count_train"] == 1294
    finetune_run = runs["finetune"].info.run_id
    assert len(client.get_metric_history(finetune_run, "finetune_valid_squared_error")) == 1
    assert len(client.get_metric_history(runs["pretrain"].info.run_id, "pretrain_recon_error")) == 2  # 2 layers
    assert 0 < runs["finetune"].data.metrics["valid_squared_error"] < 64
    assert 0.1 < runs["index"].data.metrics["precision_at_5"] <= 1
    assert "test_squared_error_pca" in runs["evaluate"].data.metrics


@pytest.mark.ray
def test_artifacts_go_through_the_server(pipeline, runs, server, tmp_path):
    folder = pipeline["folder"]
    local = mlflow.artifacts.download_artifacts(run_id=runs["finetune"].info.run_id,
                                                artifact_path="model/autoencoder.pt", dst_path=str(tmp_path),
                                                tracking_uri=pipeline["uri"])
    assert Path(local).read_bytes() == (folder / "models/autoencoder.pt").read_bytes()
    stored = {p.name for p in server.artifacts.rglob("*") if p.is_file()}
    assert {"autoencoder.pt", "stack.pt", "card.json", "pr_curves.png", "MLmodel", "model_code.py"} <= stored
    assert not (folder / "mlruns").exists() and not (folder / "mlartifacts").exists()


@pytest.mark.ray
def test_encoder_and_index_are_registered_champions_with_signatures(pipeline, runs):
    client = MlflowClient(pipeline["uri"])
    for name, stage in (("dul-encoder", "finetune"), ("dul-index", "index")):
        assert {a: str(v) for a, v in client.get_registered_model(name).aliases.items()} == {"champion": "1"}
        assert client.get_model_version(name, "1").run_id == runs[stage].info.run_id
        assert str(client.get_model_version_by_alias(name, "latest").version) == "1"
        assert f"registered {name} v1 in " in pipeline["printed"][stage]
        assert "(champion v1: the first champion)" in pipeline["printed"][stage]
    encoder = mlflow.models.get_model_info("models:/dul-encoder@champion").signature
    assert encoder.inputs.inputs[0].shape == (-1, 64) and encoder.outputs.inputs[0].shape == (-1, 6)
    assert str(encoder.inputs.inputs[0].type) == "float32"
    X_test, _ = read_split(pipeline["folder"] / "data/prepared", "test")
    codes = mlflow.pyfunc.load_model("models:/dul-encoder@champion").predict(X_test[:3])
    assert codes.shape == (3, 6) and codes.dtype == np.float32
    searcher = mlflow.pyfunc.load_model("models:/dul-index@champion")
    assert [p.name for p in searcher.metadata.get_params_schema().params] == ["k"]
    found = searcher.predict(X_test[:3], params={"k": 3})
    assert len(found) == 3 and all(len(ids) == 3 for ids in found["ids"])
    assert all(list(d) == sorted(d) for d in found["distances"]) and all("/" in i for i in found["ids"][0])


@pytest.mark.ray
def test_lineage_of_a_registered_champion_through_the_server(pipeline, runs, capsys):
    folder = pipeline["folder"]
    _dvc_lock(folder)
    for target, stage, outputs in (("models:/dul-encoder@champion", "finetune", ["models/autoencoder.pt"]),
                                   ("models:/dul-index@champion", "index", ["index/codes.npz", "index/search"])):
        status = dul(["lineage", target])
        out, err = capsys.readouterr()
        assert status == 0, err
        run_id = runs[stage].info.run_id
        assert f"note: {target} is run {run_id}; run {run_id} is stage {stage}" in out
        assert f"mlflow run {run_id} ({stage}, FINISHED" in out
        for path in [*outputs, "models/stack.pt", "data/prepared"]:
            assert f"\n{path}  md5" in out or f"── {path}  md5" in out, path


FLAGSHIP = ("ingest", "pretrain", "finetune", "evaluate", "index")  # the stages, not the zoo's or its reports


def _dvc_lock(folder: Path) -> None:
    """Make the pipeline's folder a DVC project whose dvc.lock records what the stages wrote
    (this repository's dvc.yaml without its code deps, which live elsewhere)."""
    stages = {name: stage for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items()
              if name in FLAGSHIP}  # what this test ran
    for stage in stages.values():
        stage["deps"] = [d.replace("${index.model}", "models/autoencoder.pt") for d in stage["deps"]
                         if not d.startswith(("components", "pipelines"))]
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    # DVC in a subprocess: in-process, its logger writes to whatever stderr an
    # earlier test left it (closed by then under pytest's capture)
    for args in (["init", "--no-scm", "-q"], ["commit", "--force", "-q"]):
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=folder, check=True, capture_output=True)


@pytest.mark.parametrize("stage", ["ingest", "pretrain"])
def test_unreachable_server_stops_a_stage_before_its_work(stage, server, workdir, monkeypatch, capsys):
    write_params(workdir)
    if stage != "ingest":  # its input, tracked on the live server in an experiment of its own
        server.wait()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        monkeypatch.setenv("DUL_EXPERIMENT", "inputs")
        assert ingest.main(["--params", "params.yaml"]) == 0
        capsys.readouterr()
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    monkeypatch.setattr(pretrain, "pretrain_stack", _must_not_run)  # so Ray is never started
    monkeypatch.setenv("MLFLOW_TRACKING_URI", CLOSED)
    start = time.perf_counter()
    status = STAGES[stage].main(["--params", "params.yaml"])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and seconds < 15, (seconds, err)
    assert f"MLflow tracking server {CLOSED} is unreachable or failing (connection refused)" in err
    assert "set MLFLOW_TRACKING_URI to a running one" in err
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before  # no outputs, no store


def _must_not_run(*args, **kwargs):
    raise AssertionError("pretraining started although the tracking server is unreachable")


def test_a_metric_that_cannot_be_logged_fails_the_stage(server, workdir, monkeypatch, capsys):
    write_params(workdir)
    server.wait()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("DUL_EXPERIMENT", "failures")

    def refuse(self, run_id, key, value, **kwargs):
        raise mlflow.exceptions.MlflowException("API request to /api/2.0/mlflow/runs/log-metric failed\n...")

    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "log_metric", refuse)
        assert ingest.main(["--params", "params.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MLflow could not record the stage's metrics in run" in err
    assert "runs/log-metric failed; the stage failed" in err
    client = MlflowClient(server.uri)
    [run] = [r for r in client.search_runs([client.get_experiment_by_name("failures").experiment_id])
             if r.info.run_name == "ingest"]
    assert run.info.status == "FAILED"
