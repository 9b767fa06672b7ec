"""The DBN classifier: built from a stack, trains, and pretraining initialises it."""

import pytest
import torch

from components.errors import DulError
from components.models.classifier import DBNClassifier
from components.models.rbm import BernoulliRBM


def test_from_rbms_copies_the_recognition_weights():
    torch.manual_seed(0)
    rbms = [BernoulliRBM(6, 5), BernoulliRBM(5, 4)]
    model = DBNClassifier.from_rbms(rbms, n_classes=3)
    assert model.sizes == [6, 5, 4]
    x = torch.rand(7, 6)
    h = rbms[1].h_mean(rbms[0].h_mean(x))
    assert torch.allclose(torch.sigmoid(model.hidden[-1](torch.sigmoid(model.hidden[0](x)))), h, atol=1e-6)
    assert model(x).shape == (7, 3)


def test_it_learns_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    prototypes = (torch.rand(3, 20, generator=g) > 0.5).float()
    y = torch.randint(0, 3, (300,), generator=g)
    x = (prototypes[y] + 0.2 * torch.rand(300, 20, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = DBNClassifier([20, 16], 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    before = model.error_rate(x, y)
    for _ in range(100):
        loss = model.loss(x, y)
        optimizer.zero_grad()
        loss["loss"].backward()
        optimizer.step()
    assert before > 0.3 and model.error_rate(x, y) == 0.0


def test_bad_shapes_are_clear_errors():
    with pytest.raises(DulError, match="does not chain"):
        DBNClassifier.from_rbms([BernoulliRBM(6, 5), BernoulliRBM(4, 3)], n_classes=2)
    with pytest.raises(DulError, match="classes"):
        DBNClassifier([6, 5], n_classes=1)


def test_the_dbm_net_starts_as_one_more_mean_field_sweep():
    """Built from a DBM, the augmented net's h1 and h2 on [v, mu2] are one mean-field
    sweep from the DBM's posterior: at the fixed point, h1 = mu1 and h2 = mu2."""
    from components.models.classifier import MeanFieldClassifier
    from components.models.dbm import DBM

    torch.manual_seed(0)
    dbm = DBM(12, (7, 5))
    with torch.no_grad():
        for p in (dbm.W1, dbm.W2, dbm.b_h1, dbm.b_h2):
            p.normal_(0, 0.5)
    v = (torch.rand(9, 12) < 0.5).float()
    model = MeanFieldClassifier.from_dbm(dbm, n_classes=4)
    x = MeanFieldClassifier.augment(dbm, v, steps=200, batch_size=4)
    mu1, mu2 = dbm.mean_field(v, 200)
    assert x.shape == (9, 17) and torch.equal(x[:, :12], v) and torch.allclose(x[:, 12:], mu2)
    h1, h2 = model.hidden_units(x)
    assert torch.allclose(h1, mu1, atol=1e-5) and torch.allclose(h2, mu2, atol=1e-5)
    assert model(x).shape == (9, 4)
    fresh = MeanFieldClassifier(12, (7, 5), 4)  # the same net from random weights: not the posterior
    assert not torch.allclose(fresh.hidden_units(x)[1], mu2, atol=1e-2)
    with pytest.raises(DulError, match="two positive hidden sizes"):
        MeanFieldClassifier(12, (7,), 4)


def test_the_dbm_classifier_benchmark_runs_and_refuses_a_wrong_model(tmp_path, capsys):
    """benchmarks/dbm_classifier.py on digits with a small DBM: both nets' figures, the epoch kept
    chosen on validation; a checkpoint of another family is one line and exit 2."""
    import importlib.util
    import json

    from components.data import ingest
    from components.io import save_torch
    from components.models.dbm import DBM
    from components.models.nade import NADE
    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("dbm_classifier", REPO / "benchmarks/dbm_classifier.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ingest("digits", tmp_path / "prepared")
    torch.manual_seed(0)
    save_torch(tmp_path / "dbm.pt", DBM(64, (16, 8)).to_checkpoint())
    out = tmp_path / "result.json"
    bench.main(["--data", str(tmp_path / "prepared"), "--model", str(tmp_path / "dbm.pt"), "--epochs", "10",
                "--lr", "0.01", "--batch-size", "20", "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"dbm-initialised", "random init"} and result["sizes"] == [64, 16, 8, 10]
    for run in result["runs"].values():
        assert 0 <= run["epoch_kept"] <= 10 and len(run["history"]) == 10
        assert run["valid_error"] == min([run["valid_error"]] + [r["valid_error"] for r in run["history"]])
        assert 0.0 <= run["test_error"] < 0.5  # ten classes: chance is 0.9
    assert "CPU:" in capsys.readouterr().out
    save_torch(tmp_path / "nade.pt", NADE(64, 4).to_checkpoint())
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--data", str(tmp_path / "prepared"), "--model", str(tmp_path / "nade.pt")])
    assert exit_.value.code == 2 and "is a nade checkpoint" in capsys.readouterr().err
