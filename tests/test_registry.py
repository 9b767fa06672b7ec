"""The model registry on the default local store (sqlite + mlartifacts/), no Ray:
the champion alias, the models' signatures and predictions, and failures that
are one line."""

import re

import mlflow
import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from components import tracking
from components.errors import DulError
from components.models.autoencoder import DeepAutoencoder
from components.retrieval import binarize
from components.retrieval.documents import write_search_index
from components.tracking import registry


def encoder_file(folder, sizes=(8, 5, 3)):
    torch.manual_seed(0)
    model = DeepAutoencoder(list(sizes))
    torch.save(model.to_checkpoint(), folder / "autoencoder.pt")
    return model, folder / "autoencoder.pt"


def register_encoder(path, value, deps=()):
    with tracking.stage_run("finetune", {"seed": 0}, deps=deps) as run:
        run.log_metrics({"valid_squared_error": value})
        registered = registry.register_encoder(run, path, n_inputs=8, code_size=3,
                                               metric="valid_squared_error", value=value)
    return run.run_id, registered


def test_encoder_champion_moves_only_to_a_lower_error(workdir):
    model, path = encoder_file(workdir)
    runs = {}
    for value, champion in ((1.0, "1"), (2.0, "1"), (0.5, "3")):
        runs[value], registered = register_encoder(path, value)
        assert registered.name == "dul-encoder" and registered.champion == champion
    client = MlflowClient(tracking.tracking_uri(workdir))
    assert client.get_registered_model("dul-encoder").aliases == {"champion": 3}
    assert client.get_model_version_by_alias("dul-encoder", "latest").version == 3  # MLflow's own alias
    assert client.get_model_version("dul-encoder", "2").run_id == runs[2.0]
    assert client.get_run(runs[0.5]).info.status == "FINISHED"
    assert re.fullmatch(r"registered dul-encoder v3 in \d+\.\d s \(champion v3: valid_squared_error 0.5 < v1's 1\)",
                        registered.describe())

    info = mlflow.models.get_model_info("models:/dul-encoder@champion")
    assert info.signature.inputs.inputs[0].shape == (-1, 8) and info.signature.outputs.inputs[0].shape == (-1, 3)
    x = np.random.default_rng(0).random((4, 8), dtype=np.float32)
    codes = mlflow.pyfunc.load_model("models:/dul-encoder@champion").predict(x)
    assert np.allclose(codes, model.encode(torch.from_numpy(x)).detach().numpy(), atol=1e-6)

    stored = list((workdir / "mlartifacts").rglob("*"))  # the default store's artifacts, not ./mlruns
    assert not (workdir / "mlruns").exists() and not [p for p in stored if p.suffix in (".pkl", ".pickle")]
    assert {"autoencoder.pt", "model_code.py", "autoencoder.py", "hamming.py"} <= {p.name for p in stored}
    requirements = next(p for p in stored if p.name == "requirements.txt").read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements and f"mlflow=={mlflow.__version__}" in requirements


def test_index_model_answers_k_nearest_ids_and_champion_needs_the_same_metric(workdir):
    model, _ = encoder_file(workdir)
    X = np.random.default_rng(1).random((40, 8), dtype=np.float32)
    codes = model.encode(torch.from_numpy(X)).detach().numpy()
    thresholds = np.median(codes, axis=0)
    bits = binarize(codes, thresholds)
    write_search_index(workdir / "search", model=model, thresholds=thresholds, bits=bits,
                       ids=[f"train/{i}" for i in range(40)], titles=[""] * 40, labels=np.zeros(40, np.int64),
                       splits=["train"] * 40, meta={"dataset": "toy", "kind": "images"})
    for metric, value, champion in (("precision_at_5", 0.5, "1"), ("precision_at_3", 0.9, "1"),
                                    ("precision_at_5", 0.6, "3")):
        with tracking.stage_run("index", {"k": 5}) as run:
            run.log_metrics({metric: value})
            registered = registry.register_index(run, workdir / "search", n_inputs=8, k=5, metric=metric, value=value)
        assert registered.champion == champion, registered.reason
    loaded = mlflow.pyfunc.load_model("models:/dul-index@champion")
    assert loaded.metadata.get_params_schema().params[0].default == 5
    found = loaded.predict(X[:3], params={"k": 4})
    assert list(found.columns) == ["ids", "distances"] and len(found) == 3
    for i, (ids, distances) in enumerate(zip(found["ids"], found["distances"])):
        assert len(ids) == 4 and list(distances) == sorted(distances) and distances[0] == 0
        assert f"train/{i}" in [item for item, d in zip(ids, distances) if d == 0]  # itself, at distance 0


def test_prefix_names_the_models(workdir, monkeypatch):
    monkeypatch.setenv("DUL_MODEL_PREFIX", "digits")
    assert registry.model_name("encoder") == "digits-encoder"
    monkeypatch.setenv("DUL_MODEL_PREFIX", "a/b")
    with pytest.raises(DulError, match="DUL_MODEL_PREFIX='a/b' cannot start an MLflow model name"):
        registry.model_name("index")


def test_a_failed_registration_is_one_line_and_fails_the_run(workdir, monkeypatch):
    _, path = encoder_file(workdir)

    def refuse(**kwargs):
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: registry gone\nmore detail")

    monkeypatch.setattr(mlflow.pyfunc, "log_model", refuse)
    with pytest.raises(DulError) as failure:
        register_encoder(path, 1.0)
    message = str(failure.value)
    assert "\n" not in message and "could not register the encoder as dul-encoder" in message
    assert "registry gone" in message and "MLFLOW_TRACKING_URI" in message and "rerun the stage" in message
    assert mlflow.active_run() is None  # the stage's run is not left active in this process
    client = MlflowClient(tracking.tracking_uri(workdir))
    [run] = [r for r in client.search_runs([client.get_experiment_by_name("dul").experiment_id])
             if r.info.run_name == "finetune"]
    assert run.info.status == "FAILED"


def prepared(folder, text):
    """A data/prepared folder whose md5 (the dvc.deps tag) depends on ``text``."""
    data = folder / "data" / "prepared"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.parquet").write_text(text)
    return data.relative_to(folder)


def test_champion_is_only_beaten_on_the_same_data(workdir):
    _, path = encoder_file(workdir)
    data = prepared(workdir, "digits v1")
    first = tracking.content_md5(data)
    assert register_encoder(path, 1.0, [data])[1].champion == "1"
    second = tracking.content_md5(prepared(workdir, "digits v2"))
    _, other = register_encoder(path, 0.1, [data])  # far lower error, but on other data
    assert other.champion == "1" and f"v1 trained on other data (hash {first[:8]}" in other.reason
    prepared(workdir, "digits v1")
    assert register_encoder(path, 2.0, [data])[1].champion == "1"  # same data, higher error
    _, better = register_encoder(path, 0.5, [data])
    assert better.champion == "4" and "valid_squared_error 0.5 < v1's 1" in better.reason
    client = MlflowClient(tracking.tracking_uri(workdir))
    assert client.get_registered_model("dul-encoder").aliases == {"champion": 4}
    assert second != first
    assert client.get_model_version("dul-encoder", "2").tags == {"dul.data_md5": second,
                                                                  "dul.metric": "valid_squared_error"}
    assert client.get_model_version("dul-encoder", "4").tags["dul.data_md5"] == first


def test_champion_needs_the_same_data_tag_on_its_run_too(workdir):
    """A champion registered before versions carried the data hash: its run's dvc.deps tag counts."""
    _, path = encoder_file(workdir)
    data = prepared(workdir, "digits v1")
    register_encoder(path, 1.0, [data])
    client = MlflowClient(tracking.tracking_uri(workdir))
    client.delete_model_version_tag("dul-encoder", "1", "dul.data_md5")
    prepared(workdir, "digits v2")
    assert "trained on other data" in register_encoder(path, 0.1, [data])[1].reason


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_metric_that_is_not_a_number_never_becomes_champion(workdir, bad):
    _, path = encoder_file(workdir)
    _, first = register_encoder(path, bad)
    assert first.champion == "" and "never a champion" in first.reason
    assert re.fullmatch(r"registered dul-encoder v1 in \d+\.\d s \(no champion: .*never a champion\)", first.describe())
    client = MlflowClient(tracking.tracking_uri(workdir))
    assert client.get_registered_model("dul-encoder").aliases == {}
    assert register_encoder(path, 3.0)[1].champion == "2"
    assert register_encoder(path, bad)[1].champion == "2"
    assert client.get_registered_model("dul-encoder").aliases == {"champion": 2}
