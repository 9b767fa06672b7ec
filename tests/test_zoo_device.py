"""benchmarks/zoo_device.py, the GPU machine's script, here on the CPU at toy size:
it trains and measures zoo families through the one loop without Ray, MLflow or DVC
(none is installed there), and its checkpoints load like the train stage's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from components.data import ingest
from components.evaluation.scorer import ScorerNet
from components.io import save_torch
from components.models import registry

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import zoo_device  # noqa: E402

TOY = {"zoo": {"families": ["pixelcnn", "gan"], "variants": {"gated-pixelcnn": "pixelcnn"}, "test_items": 30},
       "pixelcnn": {"channels": 4, "layers": 1, "epochs": 2, "gated": False},
       "gated-pixelcnn": {"channels": 4, "layers": 1, "epochs": 1, "gated": True},
       "gan": {"architecture": "mlp", "latent": 4, "hidden": 16, "epochs": 1}}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ingest("digits", tmp_path / "data/prepared")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TOY))
    return tmp_path


def test_it_trains_measures_and_scores_without_ray_mlflow_or_dvc(toy, monkeypatch, one_thread):
    for missing in ("ray", "mlflow", "dvc"):  # as on the GPU machine: importing any of them fails
        monkeypatch.setitem(sys.modules, missing, None)
    scorer = ScorerNet((8, 8), 10)
    save_torch(toy / "scorer.pt", scorer.to_checkpoint())
    assert zoo_device.main(["--names", "pixelcnn", "gated-pixelcnn", "gan", "--samples", "40", "--scorer",
                            "scorer.pt", "--device", "cpu", "--out", "out"]) == 0
    report = json.loads((toy / "out/zoo-device.json").read_text())
    assert "CPU" in report["device"] and report["data"] == "digits"
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ["pixelcnn", "gated-pixelcnn", "gan"]
    assert rows["gated-pixelcnn"]["family"] == "pixelcnn" and rows["gated-pixelcnn"]["params"]["gated"] is True
    assert len(rows["pixelcnn"]["curve"]) == 2 and rows["pixelcnn"]["train_seconds"] > 0
    for name in ("pixelcnn", "gated-pixelcnn"):  # densities: the likelihood report's exact figure on 30 items
        assert rows[name]["estimator"] == "exact" and rows[name]["n_test"] == 30 and 0 < rows[name]["nll_nats"] < 64
        assert rows[name]["parameters"] > 0
    assert "nll_nats" not in rows["gan"]  # an implicit model has no likelihood
    for name, row in rows.items():  # every image sampler: 40 binary samples, scored in the scorer's features
        drawn = np.load(toy / f"out/samples/{name}.npy")
        assert drawn.shape == (40, 64) and set(np.unique(drawn)) <= {0, 1}
        assert row["samples"] == 40 and row["seed"] == 0 and row["frechet"] >= 0 and 0 <= row["coverage"] <= 1
        model = registry.load(toy / f"out/models/{name}.pt")  # the zoo's checkpoint format
        assert model.family == row["family"]


def test_bad_input_is_one_line(toy, capsys):
    assert zoo_device.main(["--names", "made", "--out", "out", "--device", "cpu"]) == 2
    assert "made: not in zoo.families or zoo.variants of params.yaml" in capsys.readouterr().err
    assert zoo_device.main(["--names", "gan", "--samples", "-1", "--out", "out"]) == 2
    assert "--samples is -1" in capsys.readouterr().err
    assert not (toy / "out").exists()


def test_its_imports_need_no_ray_mlflow_or_dvc():
    code = ("import sys, runpy; sys.modules.update(dict.fromkeys(['ray', 'mlflow', 'dvc'])); "
            f"sys.argv = ['zoo_device.py', '--help']; runpy.run_path({str(REPO / 'benchmarks/zoo_device.py')!r}, "
            "run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--scorer" in done.stdout


def test_the_gpu_params_files_parse_and_compare_like_with_like():
    from components.config import load_family_params, load_params

    zoo = load_params("zoo", REPO / "benchmarks/zoo_device.yaml")
    params = {name: load_family_params(name, REPO / "benchmarks/zoo_device.yaml") for name in zoo.names}
    plain, gated = params["pixelcnn"], params["gated-pixelcnn"]
    assert gated.gated and not plain.gated
    assert (plain.channels, plain.layers, plain.epochs) == (gated.channels, gated.layers, gated.epochs)
    assert params["dcgan"].architecture == "dcgan" and params["gan"].architecture == "mlp"
    wavenet = load_family_params("wavenet", REPO / "benchmarks/wavenet_device.yaml")
    assert load_params("ingest", REPO / "benchmarks/wavenet_device.yaml") == load_params(
        "ingest", REPO / "docs/results/wavenet-20ng/params.yaml")  # the CPU row's data, a larger net
    assert wavenet.channels > 32


def test_a_run_resumes_from_its_checkpoints_as_an_uninterrupted_one(toy, one_thread, monkeypatch):
    """--checkpoints: a 2-epoch run killed after epoch 1 and rerun ends where an uninterrupted
    one does, bit for bit (the loop seeds each epoch from (seed, epoch); the optimizers' state is kept)."""
    import torch

    common = ["--names", "pixelcnn", "--samples", "0", "--device", "cpu", "--threads", "1"]
    assert zoo_device.main([*common, "--out", "whole"]) == 0

    class Killed(Exception):
        pass

    class KilledAfterOneEpoch(zoo_device.loop.LocalSession):
        def save(self, state, row):
            super().save(state, row)
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(zoo_device.loop, "LocalSession", KilledAfterOneEpoch)
        with pytest.raises(Killed):
            zoo_device.main([*common, "--checkpoints", "ck", "--out", "cut"])
    assert zoo_device.session_epochs(toy / "ck/pixelcnn") == (1, False)
    assert not (toy / "cut/zoo-device.json").exists()
    assert zoo_device.main([*common, "--checkpoints", "ck", "--out", "resumed"]) == 0
    assert zoo_device.session_epochs(toy / "ck/pixelcnn") == (2, True)
    whole, resumed = (json.loads((toy / f"{out}/zoo-device.json").read_text())["rows"][0]
                      for out in ("whole", "resumed"))
    assert "resumed_at_epoch" not in whole and resumed["resumed_at_epoch"] == 1
    assert resumed["curve"] == whole["curve"] and len(whole["curve"]) == 2
    assert resumed["nll_nats"] == whole["nll_nats"]
    a, b = (registry.load(toy / f"{out}/models/pixelcnn.pt").state_dict() for out in ("whole", "resumed"))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_a_finished_run_is_not_silently_extended(toy, one_thread, capsys):
    common = ["--names", "pixelcnn", "--samples", "0", "--device", "cpu", "--checkpoints", "ck"]
    (toy / "short.yaml").write_text(yaml.safe_dump({**TOY, "pixelcnn": {**TOY["pixelcnn"], "epochs": 1}}))
    assert zoo_device.main([*common, "--params", "short.yaml", "--out", "short"]) == 0
    assert zoo_device.main([*common, "--out", "longer"]) == 2
    assert "holds a finished 1-epoch run of pixelcnn but its params say 2 epochs" in capsys.readouterr().err
    assert not (toy / "longer").exists()
    assert zoo_device.main([*common, "--params", "short.yaml", "--out", "again"]) == 0  # the same run: handed back
    (toy / "other.yaml").write_text(yaml.safe_dump({**TOY, "pixelcnn": {**TOY["pixelcnn"], "epochs": 1, "lr": 0.01}}))
    assert zoo_device.main([*common, "--params", "other.yaml", "--out", "other"]) == 2
    assert "was trained with other params for pixelcnn (lr: 0.001 now 0.01)" in capsys.readouterr().err
    assert not (toy / "other").exists()


def test_bad_threads_is_one_line(toy, capsys):
    assert zoo_device.main(["--names", "gan", "--threads", "0", "--out", "out"]) == 2
    assert "--threads is 0" in capsys.readouterr().err
    assert not (toy / "out").exists()
