"""Gaussian visible units in the pipeline (``pretrain.visible_units: gaussian``):
the training split's per-feature mean and std are computed once, saved with
the stack and applied alike by every stage, the unrolled net fine-tunes in
standardised units and reports its errors in the data's."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from components.config import parse_section
from components.data import ingest, read_split
from components.data.stream import TensorBatches
from components.errors import DulError
from components.evaluation import encode
from components.io import save_torch
from components.models.autoencoder import DeepAutoencoder
from components.models.rbm_gaussian import GaussianBernoulliRBM
from components.models.stack import layer_from_state, layer_state
from components.models.standardise import Standardise, feature_statistics
from components.tracking.model_code import DulModel
from components.training import finetune, loop, pretrain
from pipelines import evaluate


def test_statistics_match_the_whole_matrix_however_it_is_chunked():
    rng = np.random.default_rng(0)
    X = (1000 + rng.normal(size=(500, 6)) * [0.01, 0.1, 1, 10, 100, 0]).astype(np.float32)  # column 5 constant
    expected_std = X.astype(np.float64).std(axis=0)
    for sizes in ([500], [1, 0, 250, 249], [64] * 7 + [52]):
        chunks = torch.from_numpy(X).split(sizes)
        stats = feature_statistics(chunks)
        np.testing.assert_allclose(stats["mean"], X.astype(np.float64).mean(axis=0), rtol=1e-7)
        np.testing.assert_allclose(stats["std"][:5], expected_std[:5], rtol=1e-5)
        assert stats["std"][5] == 1.0  # a constant feature is not blown up: it standardises to 0


def test_a_non_finite_value_is_named_by_its_row_and_column():
    x = torch.randn(100, 5)
    x[70, 3] = float("nan")
    with pytest.raises(DulError, match=r"the data has a non-finite value \(nan\) at row 70, column 3: "
                                       r"Gaussian visible units need finite"):
        feature_statistics(x.split(64), what="the data")
    with pytest.raises(DulError, match="no rows"):
        feature_statistics([])


def test_standardise_inverts_and_rejects_unusable_statistics():
    module = Standardise.from_statistics({"mean": torch.tensor([1.0, -2.0]), "std": torch.tensor([0.5, 4.0])})
    x = torch.tensor([[2.0, 2.0]])
    torch.testing.assert_close(module(x), torch.tensor([[2.0, 1.0]]))
    torch.testing.assert_close(module.inverse(module(x)), x)
    with pytest.raises(DulError, match="positive std per feature"):
        Standardise.from_statistics({"mean": torch.zeros(2), "std": torch.tensor([1.0, 0.0])})


@pytest.mark.parametrize("values, message", [
    ({"visible_units": "gausian"}, r"pretrain\.visible_units is 'gausian'; did you mean 'gaussian'\?"),
    ({"visible_units": "gaussian", "layer_model": "autoencoder"}, r"gaussian needs RBM layers.*layer_model: rbm"),
    ({"visible_units": "gaussian", "hidden": [10]}, r"single layer.*add a layer to pretrain\.hidden or set code_units"),
])
def test_gaussian_params_are_checked(values, message):
    assert parse_section("pretrain", {"visible_units": "gaussian"}).visible_units == "gaussian"
    with pytest.raises(DulError, match=message):
        parse_section("pretrain", values)


def test_gaussian_for_word_counts_names_the_fix():
    params = parse_section("pretrain", {"visible_units": "gaussian"})
    with pytest.raises(DulError, match="20newsgroups is word counts; set it to auto .*poisson or softmax"):
        pretrain.resolved(params, {"kind": "bow", "dataset": "20newsgroups"})


def test_a_diverged_gaussian_layer_names_the_rate_to_lower():
    params = parse_section("pretrain", {"visible_units": "gaussian", "hidden": [4, 2]})
    first, second = pretrain.layer_phases(params, inputs=None)
    rbm = GaussianBernoulliRBM(4, 2)
    with pytest.raises(DulError, match=r"NaN/inf in recon_error\) in layer 1 at epoch 3.*a Gaussian layer needs a "
                                       "small rate: set pretrain.lr_layers"):
        loop.check_finite({"recon_error": float("nan")}, rbm.parameters(), "pretrain", first, epoch=2)
    with pytest.raises(DulError, match=r"NaN/inf in the parameters\) in layer 2 at epoch 1; .*lower pretrain.lr or "
                                       "pretrain.lr_code"):
        loop.check_finite({"recon_error": 1.0}, [torch.tensor([float("inf")])], "pretrain", second, epoch=0)
    loop.check_finite({"recon_error": 1.0}, rbm.parameters(), "pretrain", second, epoch=0)  # finite: no error


def _real_data(n=600, d=12, seed=0) -> torch.Tensor:
    """Real values far from [0, 1]: 3 latent factors, features of different offsets and scales."""
    generator = torch.Generator().manual_seed(seed)
    factors = torch.randn(n, 3, generator=generator)
    mixing = torch.randn(3, d, generator=generator)
    noise = 0.1 * torch.randn(n, d, generator=generator)
    return (factors @ mixing + noise) * torch.linspace(1, 20, d) + torch.linspace(-50, 50, d)  # (n, d)


def _pretrained_stack(x: torch.Tensor, epochs: int = 10) -> dict:
    params = {"hidden": [16, 3], "code_units": "linear", "init_std": 0.01, "lr": 0.1, "lr_code": 0.001,
              "lr_layers": [0.005, 0.001], "weight_decay": 0.0002, "momentum_initial": 0.5,
              "visible_units": "gaussian"}
    stats = feature_statistics(x.split(128))
    data, layers = Standardise.from_statistics(stats)(x), []
    for i in range(2):
        torch.manual_seed(i)
        rbm = pretrain.build_layer(i, data.shape[1], params)
        optimizer = pretrain.make_optimizer(rbm, i, params)
        for epoch in range(epochs):
            pretrain.train_epoch(rbm, optimizer, data, batch_size=50, n_batches=len(x) // 50, cd_k=1,
                                 generator=torch.Generator().manual_seed(epoch))
        layers.append(layer_state(rbm))
        data = rbm.h_mean(data).detach()
    return {"layers": layers, "standardise": stats}


def test_the_unrolled_net_takes_raw_inputs_and_reconstructs_in_their_units():
    x = _real_data(n=200)
    stack = _pretrained_stack(x, epochs=1)
    assert isinstance(layer_from_state(stack["layers"][0]), GaussianBernoulliRBM)
    net = finetune.unroll(stack)
    mean, std = stack["standardise"]["mean"], stack["standardise"]["std"]
    bare = DeepAutoencoder(net.sizes, net.code_units, net.input_units)  # identity standardisation
    bare.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("standardise")}, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(net.encode(x), bare.encode((x - mean) / std))
        torch.testing.assert_close(net.reconstruct(x), bare.reconstruct((x - mean) / std) * std + mean)
        losses = net.loss(x)
        data_error = (net.reconstruct(x) - x).pow(2).sum() / len(x)
        torch.testing.assert_close(losses["squared_error"], data_error)  # reported in the data's units
        torch.testing.assert_close(losses["loss"], 0.5 * (net(x) - (x - mean) / std).pow(2).sum() / len(x))
    loaded = DeepAutoencoder.from_checkpoint(net.to_checkpoint())
    assert torch.equal(loaded.standardise.mean, mean) and torch.equal(loaded.standardise.std, std)
    random = finetune.initial_model(stack, {"init": "random", "seed": 0})
    assert torch.equal(random.standardise.std, std)  # the baseline sees the same inputs
    with pytest.raises(DulError, match="no standardisation statistics.*run pretrain again"):
        finetune.unroll({"layers": stack["layers"]})


@pytest.mark.parametrize("method", [None, "cg"])
def test_a_gaussian_stack_fine_tunes(method, one_thread):
    x, valid = _real_data(n=800).split([600, 200])
    net = finetune.unroll(_pretrained_stack(x))
    optimizer = finetune.make_optimizer(net, {"optimizer": method or "adam", "lr": 0.003})
    before = finetune.squared_error(net, valid)
    rows = [finetune.train_epoch(net, optimizer, x, batch_size=50, n_batches=12, method=method,
                                 generator=torch.Generator().manual_seed(e), input_units=net.input_units,
                                 standardise=net.standardise) for e in range(8)]
    losses = [row["train_loss"] for row in rows]
    assert losses[-1] < 0.7 * losses[0], losses
    after = finetune.squared_error(net, valid)
    assert after < 0.7 * before
    # the squared errors are in the data's units: far above the standardised loss for features of std ~1-20
    assert rows[-1]["train_squared_error"] > 10 * 2 * rows[-1]["train_loss"]


@pytest.fixture
def checked_batches(in_process, monkeypatch):
    """The stages' loops in process (``in_process``); every batch checked by the Gaussian layer, kept."""
    seen = []
    check = GaussianBernoulliRBM.check_data
    monkeypatch.setattr(GaussianBernoulliRBM, "check_data",
                        classmethod(lambda cls, v, layer=None: (seen.append(v.clone()), check(v, layer))))
    return seen


@pytest.fixture
def digits(workdir) -> Path:
    folder = workdir / "data/prepared"
    ingest("digits", folder)
    return folder


def _digits_statistics(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = X.astype(np.float64).std(axis=0)
    std[std == 0] = 1  # the always-black border pixels
    return X.astype(np.float64).mean(axis=0), std


def test_pretrain_finetune_evaluate_and_the_encoder_share_one_standardisation(digits, checked_batches, monkeypatch,
                                                                                one_thread):
    X_train, _ = read_split(digits, "train")
    X_test, y_test = read_split(digits, "test")
    mean, std = _digits_statistics(X_train)
    settings = {"visible_units": "gaussian", "hidden": [16, 4], "epochs": 1, "lr_layers": [0.005, 0.001],
                "max_failures": 0}
    stack = pretrain.pretrain_stack(digits, parse_section("pretrain", settings), key="gaussian")
    np.testing.assert_allclose(stack["standardise"]["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(stack["standardise"]["std"], std, rtol=1e-5)
    np.testing.assert_allclose(checked_batches[0], (X_train - mean) / std, atol=1e-5)  # what layer 1 trained on

    save_torch(digits.parent / "stack.pt", {k: stack[k] for k in ("layers", "standardise")})  # as the stage does
    tuned = finetune.finetune_autoencoder(digits, digits.parent / "stack.pt", parse_section("finetune", {
        "epochs": 1, "max_failures": 0}), key="gaussian")
    model = DeepAutoencoder.from_checkpoint(tuned["checkpoint"])
    assert torch.equal(model.standardise.mean, stack["standardise"]["mean"])
    assert torch.equal(model.standardise.std, stack["standardise"]["std"])

    for figure in ("reconstruction_figure", "filters_figure", "samples_figure", "word_table_figure"):
        monkeypatch.setattr(evaluate, figure, lambda *args, **kwargs: None)
    metrics, _ = evaluate._images(model, stack, X_train, X_test, y_test, {"image_shape": [8, 8]},
                                  parse_section("evaluate", {"ais_chains": 0}))
    with torch.no_grad():
        standardised = model(torch.from_numpy(X_test)).double().numpy()  # (N, D) in standardised units
    assert metrics["test_squared_error_autoencoder"] == pytest.approx(
        ((standardised * std + mean - X_test) ** 2).sum(axis=1).mean(), rel=1e-4)  # the data's units, as PCA's
    assert metrics["test_squared_error_autoencoder_standardised"] == pytest.approx(
        ((standardised - (X_test - mean) / std) ** 2).sum(axis=1).mean(), rel=1e-4)
    assert 0 < metrics["test_squared_error_pca"] < metrics["test_squared_error_autoencoder"] < 64  # one epoch

    torch.save(model.to_checkpoint(), digits.parent / "autoencoder.pt")
    encoder = DulModel()  # the registered dul-encoder's code, as MLflow loads it
    encoder.load_context(SimpleNamespace(artifacts={"encoder": str(digits.parent / "autoencoder.pt")}))
    bare = DeepAutoencoder(model.sizes, model.code_units, model.input_units)  # identity standardisation
    bare.load_state_dict(model.state_dict())
    bare.standardise = Standardise(model.sizes[0])
    with torch.no_grad():
        expected = bare.encode(torch.from_numpy((X_test[:5] - mean) / std).float()).numpy()
    np.testing.assert_allclose(encoder.predict(None, X_test[:5]), expected, atol=1e-5)  # raw rows in
    np.testing.assert_allclose(encode(model, X_test[:5]), expected, atol=1e-5)  # what index and dul search use


def test_streamed_pretraining_standardises_every_batch(digits, checked_batches, one_thread):
    settings = {"visible_units": "gaussian", "hidden": [8, 3], "epochs": 1, "lr_layers": [0.005, 0.001]}
    streamed = pretrain.pretrain_stack(digits, parse_section("pretrain", {**settings, "stream": True}), key="streamed")
    stats = pretrain.input_statistics(digits)
    assert all(torch.equal(streamed["standardise"][k], stats[k]) for k in ("mean", "std"))
    seen = torch.cat(checked_batches)  # layer 1's inputs, batch by batch as drawn (every layer's epochs)
    varying = (stats["std"] > 0.1) & (stats["std"] != 1)  # (1: a constant pixel's)
    assert len(checked_batches) > 1 and seen[:, varying].mean(dim=0).abs().max() < 0.1
    torch.testing.assert_close(seen[:, varying].std(dim=0), torch.ones(int(varying.sum())), atol=0.1, rtol=0)


def test_a_missing_value_stops_pretrain_before_training(digits, checked_batches, monkeypatch):
    X, _ = read_split(digits, "train")
    X[5, 7] = np.nan  # ingest never writes one; a hand-made split might
    monkeypatch.setattr(pretrain, "open_split", lambda *args, **kwargs: TensorBatches(torch.from_numpy(X), 100, 12))
    with pytest.raises(DulError, match=r"non-finite value \(nan\) at row 5, column 7"):
        pretrain.pretrain_stack(digits, parse_section("pretrain", {"visible_units": "gaussian"}), key="nan")
    assert not checked_batches  # no layer saw any data
