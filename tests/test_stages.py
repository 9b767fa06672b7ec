"""Every stage on a tiny fixture in a temporary folder: outputs, metric keys,
MLflow runs, and bad input that stops with one line and leaves nothing behind."""

import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from components.models.autoencoder import DeepAutoencoder
from components.retrieval import load_index
from components.retrieval.documents import load_search_index
from pipelines import evaluate, finetune, index, ingest, pretrain
from tests.conftest import write_params


def run_stage(module, folder, capsys=None) -> int:
    return module.main(["--params", str(folder / "params.yaml")])


@pytest.mark.ray
def test_stages_in_order(workdir, ray_instance, capsys):
    write_params(workdir)
    assert run_stage(ingest, workdir) == 0
    card = json.loads((workdir / "data/prepared/card.json").read_text())
    assert card["splits"]["train"]["count"] == 1294 and card["image_shape"] == [8, 8]

    assert run_stage(pretrain, workdir) == 0
    stack = torch.load(workdir / "models/stack.pt", weights_only=True)
    assert stack["config"]["sizes"] == [64, 24, 6] and [l["hidden_type"] for l in stack["layers"]] == ["binary", "linear"]
    assert set(json.loads((workdir / "reports/pretrain/metrics.json").read_text())) == {
        "layer1_recon_error", "layer2_recon_error"}
    assert len((workdir / "reports/pretrain/curve.csv").read_text().splitlines()) == 1 + 2 * 2

    assert run_stage(finetune, workdir) == 0
    model = DeepAutoencoder.from_checkpoint(torch.load(workdir / "models/autoencoder.pt", weights_only=True))
    assert model.sizes == [64, 24, 6]

    assert run_stage(evaluate, workdir) == 0
    metrics = json.loads((workdir / "reports/evaluate/metrics.json").read_text())
    assert metrics["code_size"] == 6 and metrics["n_test"] == 359
    assert 0 < metrics["test_squared_error_pca"] < metrics["test_squared_error_autoencoder"] < 64
    for figure in ("reconstructions.png", "learning_curves.png", "filters.png", "samples.png", "codes_2d.png"):
        assert (workdir / "reports/evaluate" / figure).read_bytes()[:4] == b"\x89PNG"
    # the first RBM as a density model: AIS log Z inside its bars, a log-likelihood below 0
    assert metrics["rbm1_ais_log_z_upper"] >= metrics["rbm1_ais_log_z"]
    assert metrics["rbm1_test_log_likelihood"] < 0 and metrics["rbm1_test_pseudo_log_likelihood"] < 0

    assert run_stage(index, workdir) == 0
    idx = load_index(workdir / "index/codes.npz")
    assert len(idx.labels) == 1797 and idx.n_bits == 6
    search = load_search_index(workdir / "index/search")  # images: codes, ids and the encoder, no TF-IDF
    assert len(search) == 1797 and search.n_bits == 6 and search.tfidf is None and search.ids[0] == "train/0"
    index_metrics = json.loads((workdir / "reports/index/metrics.json").read_text())
    precision = index_metrics["precision_at_5"]
    assert 0.1 < precision <= 1.0  # above chance (0.1) even for a 2-epoch model
    # codes and baselines on the same queries, at the same size
    assert {"precision_at_100/autoencoder", "precision_at_100/autoencoder_real_valued_codes",  # linear code layer
            "precision_at_100/pixels", "precision_at_100/pca_6", "precision_at_100/lsh"} <= set(index_metrics)
    assert index_metrics["precision_at_100/pixels"] > 0.5  # cosine over raw digits is a strong baseline
    assert (workdir / "reports/index/pr_curves.png").read_bytes()[:4] == b"\x89PNG"

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dul").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert {"ingest", "pretrain", "finetune", "evaluate", "index", "pipeline test"} == set(by_name)
    parent = by_name["pipeline test"].info.run_id
    for stage in ("ingest", "pretrain", "finetune", "evaluate", "index"):
        run = by_name[stage]
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
        assert "git.commit" in run.data.tags
    assert by_name["pretrain"].data.params["hidden"] == "[24, 6]"
    assert len(client.get_metric_history(by_name["finetune"].info.run_id, "finetune_valid_squared_error")) == 2
    assert by_name["evaluate"].data.metrics["test_squared_error_pca"] == pytest.approx(metrics["test_squared_error_pca"])
    assert "dvc.outs.models/stack.pt" in by_name["pretrain"].data.tags


@pytest.mark.parametrize("overrides, message", [
    ({"ingest": {"dataset": "mnsit"}}, "unknown dataset 'mnsit'"),
    ({"ingest": {"datset": "digits"}}, "ingest.datset: unknown key; did you mean 'dataset'?"),
    ({"ingest": {"dataset": "mnist", "source": "/nonexistent/folder"}}, "/nonexistent/folder"),
])
def test_bad_ingest_input_is_one_line_and_leaves_nothing(workdir, capsys, overrides, message):
    write_params(workdir, overrides)
    assert run_stage(ingest, workdir) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (workdir / "data").exists()


def test_zero_layer_size_stops_pretrain_before_any_work(workdir, capsys):
    write_params(workdir, {"pretrain": {"hidden": [16, 0]}})
    assert run_stage(pretrain, workdir) == 2
    assert "pretrain.hidden[1] is 0" in capsys.readouterr().err
    assert not (workdir / "models").exists() and not (workdir / "mlflow.db").exists()


def test_stage_help_describes_the_stage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretrain.main(["--help"])
    assert exit_info.value.code == 0
    assert "greedy layer-wise pretraining" in capsys.readouterr().out
