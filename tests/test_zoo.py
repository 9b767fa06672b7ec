"""The model contract, family by family: every zoo family builds from its params
section, trains through the one loop (in process: no Ray), resumes bitwise, saves
and loads by its family name, and has exactly the capabilities it claims.

Adding a family: one entry in ``TINY`` (tiny settings for its section).
Its maths is tested against brute force in its own test file.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from components.config import ZooParams, parse_dataclass, parse_section
from components.data import ingest, item_shape, read_card
from components.errors import DulError
from components.io import save_torch
from components.models import registry
from components.models.base import Density, Encoder, Model, Sampler
from components.training import family as training
from components.training import loop

TINY = {
    "vae": {"latent": 2, "hidden": [8]},
    "iwae": {"latent": 2, "hidden": [8], "k": 4},
    "nade": {"hidden": 8},
    "made": {"hidden": [16], "masks": 2, "test_masks": 2},
    "nash": {"bits": 8, "hidden": 16},
    "rbm": {"hidden": 8, "ais_chains": 10, "ais_betas": 100},
    "sparse_coding": {"atoms": 8, "lasso_iterations": 10},
    "psd": {"atoms": 8, "lasso_iterations": 10},
    "helmholtz": {"layers": [8], "k": 3},
    "dbm": {"hidden": [6, 4], "pretrain_epochs": 1, "chains": 10, "ais_chains": 10, "ais_betas": 100},
    "stacked_autoencoder": {"hidden": [8, 4], "noise": 0.2, "sparsity_cost": 0.1},
    "pixelcnn": {"gated": True, "channels": 4, "layers": 1},
    "vdsh": {"bits": 4, "hidden": 16, "kl_warmup": 2},
    "gan": {"architecture": "dcgan", "latent": 4, "hidden": 4},
    "gmmn": {"latent": 3, "hidden": [8, 16]},
    "wavenet": {"channels": 4, "skip_channels": 4, "head": 0, "blocks": 1, "layers": 2, "window": 16, "steps": 3,
                "valid_chars": 0},
}
COUNTS = {"nash", "vdsh"}  # families of word counts: they train on a tiny text corpus instead of digits
SEQUENCES = {"wavenet"}  # families of byte sequences: they train on a tiny corpus as characters


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo") / "prepared"
    ingest("digits", folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny 20 Newsgroups-layout archive as bag-of-words splits (4-word vocabulary)."""
    from tests.test_corpora import ingest_tiny_newsgroups

    return ingest_tiny_newsgroups(tmp_path_factory.mktemp("corpus"), validation_fraction=0.34, vocabulary_size=4)


@pytest.fixture(scope="module")
def characters(tmp_path_factory):
    """The tiny 20 Newsgroups-layout archive as byte sequences (ingest.representation: chars)."""
    from tests.test_corpora import ingest_tiny_newsgroups

    return ingest_tiny_newsgroups(tmp_path_factory.mktemp("characters"), validation_fraction=0.34,
                                  representation="chars")


def tiny_params(family: str, **overrides):
    values = {**TINY[family], "epochs": 2, "batch_size": 50 if family not in SEQUENCES else 4, **overrides}
    return parse_dataclass(registry.params_class(family), family, values)


def test_every_zoo_family_has_a_tiny_entry():
    assert set(TINY) == set(registry.ZOO_FAMILIES)


def test_the_repository_params_hold_every_key_of_every_listed_family():
    import yaml

    from tests.conftest import REPO

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for family in raw["zoo"]["families"]:
        fields = {f.name for f in dataclasses.fields(registry.params_class(family))}
        assert set(raw[family]) == fields, family
        assert parse_dataclass(registry.params_class(family), family, {}) == \
            parse_dataclass(registry.params_class(family), family, raw[family]), f"{family}: defaults differ"


def config(family, digits, **overrides) -> dict:
    zoo = parse_section("zoo", {"families": [family] if family in TINY else [], "test_samples": 10})
    return {"family": family, "data_dir": str(digits), "shape": list(item_shape(read_card(digits), digits)),
            "params": tiny_params(family, **overrides), "zoo": zoo}


image_families = [f for f in TINY if f not in COUNTS | SEQUENCES]


class Killed(Exception):
    pass


class KilledAfter(loop.LocalSession):
    """A session whose process dies right after the checkpoint of epoch ``epochs``."""

    def __init__(self, epochs: int, folder):
        super().__init__(folder=folder)
        self.epochs = epochs

    def save(self, state, row):
        super().save(state, row)
        if len(state["history"]) == self.epochs:
            raise Killed


@pytest.mark.parametrize("family", image_families)
def test_a_family_trains_through_the_loop_and_resumes_bitwise(family, digits, tmp_path, one_thread):
    whole = loop.run_in_process(training.family_loop, config(family, digits, epochs=3))
    with pytest.raises(Killed):
        loop.run_in_process(training.family_loop, config(family, digits, epochs=3), session=KilledAfter(2, tmp_path))
    trained = []
    resumed = loop.run_in_process(training.family_loop, config(family, digits, epochs=3),
                                  session=loop.LocalSession(folder=tmp_path, on_epoch=trained.append))
    assert [row["epoch"] for row in trained] == [3]  # resumed after the checkpoint: epoch 3 only
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3]
    assert resumed["history"] == whole["history"]
    (a,), (b,) = whole["done"], resumed["done"]
    assert a["family"] == family and all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert all(math.isfinite(v) for row in whole["history"] for v in row.values())


@pytest.mark.parametrize("family", image_families)
def test_a_family_saves_loads_and_does_what_it_claims(family, digits, tmp_path, one_thread):
    state = loop.run_in_process(training.family_loop, config(family, digits))
    save_torch(tmp_path / "model.pt", state["done"][0])
    model = registry.load(tmp_path / "model.pt")  # weights_only: nothing unpickled
    assert isinstance(model, Model) and model.family == family
    x = torch.from_numpy(training.split_inputs(digits, "test", "binary", ZooParams())[:20])
    if isinstance(model, Density):
        figures = training.test_figures(model, x.numpy(), samples=5)
        assert figures["nll_nats"] > 0 and figures["stderr"] > 0 and figures["estimator"] in ("exact", "is-5", "ais", "ais-bound")
        assert figures["bits_per_dim"] == pytest.approx(figures["nll_nats"] / (64 * math.log(2)))
    if isinstance(model, Sampler):
        drawn = model.sample(7, torch.Generator().manual_seed(1))
        assert drawn.shape == (7, 64) and torch.equal(drawn, model.sample(7, torch.Generator().manual_seed(1)))
    if isinstance(model, Encoder):
        assert model.encode(x).shape == (20, model.code_size) and model.n_inputs == 64


@pytest.mark.parametrize("family", list(TINY))
def test_a_checkpoint_whose_tensors_do_not_match_is_one_line(family, tmp_path):
    model = registry.build(family, tiny_params(family), (None,) if family in SEQUENCES else (1, 8, 8))
    checkpoint = model.to_checkpoint()
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name] = torch.zeros(3, 3, 3)
    save_torch(tmp_path / "bad.pt", checkpoint)
    with pytest.raises(DulError, match=f"the {family} checkpoint does not match its params"):
        registry.load(tmp_path / "bad.pt")


def test_unknown_family_and_foreign_files_are_one_line(tmp_path):
    with pytest.raises(DulError, match="unknown model family 'vea'; did you mean 'vae'"):
        registry.family_class("vea")
    with pytest.raises(DulError, match="unknown model family 'wgan'"):
        registry.load({"family": "wgan", "params": {}, "state_dict": {}})
    (tmp_path / "pickle.pt").write_bytes(__import__("pickle").dumps(object()))
    with pytest.raises(DulError, match="is not a"):
        registry.load(tmp_path / "pickle.pt")
    save_torch(tmp_path / "ok.pt", registry.build("nade", tiny_params("nade"), (64,)).to_checkpoint())
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:200])
    with pytest.raises(DulError, match=r"cut\.pt is not a readable dul checkpoint \(truncated or damaged\)"):
        registry.load(tmp_path / "cut.pt")


def test_binarization_protocols_are_stated_and_seeded():
    from components.data.binarize import binarize

    X = np.random.default_rng(0).random((50, 16)).astype(np.float32)
    fixed = binarize(X, "fixed", 3, "train")
    assert np.array_equal(fixed, binarize(X, "fixed", 3, "train"))  # the same draw every time
    assert not np.array_equal(fixed, binarize(X, "fixed", 4, "train"))
    assert not np.array_equal(fixed, binarize(X, "fixed", 3, "test"))  # each split its own draw
    assert np.array_equal(binarize(X, "threshold", 0, "train"), (X > 0.5).astype(np.float32))
    assert abs(fixed.mean() - X.mean()) < 0.03  # E[b] = x
    with pytest.raises(DulError, match="intensities in \\[0, 1\\]"):
        binarize(X * 3, "fixed", 0, "train")


@pytest.mark.parametrize("family", sorted(COUNTS))
def test_a_word_count_family_trains_on_counts_through_the_loop_and_resumes_bitwise(family, corpus, tmp_path,
                                                                                   one_thread):
    """The families of documents get word counts from the zoo (never a binarization), train through
    the loop, resume bitwise and encode every document."""
    assert training.family_inputs(registry.build(family, tiny_params(family), (4,))) == "counts"
    settings = config(family, corpus, epochs=3, batch_size=2)
    whole = loop.run_in_process(training.family_loop, settings)
    with pytest.raises(Killed):
        loop.run_in_process(training.family_loop, settings, session=KilledAfter(2, tmp_path))
    resumed = loop.run_in_process(training.family_loop, settings, session=loop.LocalSession(folder=tmp_path))
    (a,), (b,) = whole["done"], resumed["done"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    model = registry.load(a)
    counts = torch.from_numpy(training.split_inputs(corpus, "train", "counts", settings["zoo"]))
    assert model.encode(counts).shape == (len(counts), model.code_size)
    assert not torch.equal(model.idf, torch.ones_like(model.idf))  # fitted on the training counts


@pytest.mark.parametrize("family", sorted(SEQUENCES))
def test_a_sequence_family_trains_on_windows_through_the_loop_and_resumes_bitwise(family, characters, tmp_path,
                                                                                  one_thread):
    """The families of byte sequences get windows of the training stream, are validated in bits
    per character of the validation stream, resume bitwise, and load and score by their family."""
    from components.data.chars import read_stream
    from components.training.sequences import stream_figures

    settings = config(family, characters, epochs=3)
    assert settings["shape"] == [None]
    whole = loop.run_in_process(training.family_loop, settings)
    with pytest.raises(Killed):
        loop.run_in_process(training.family_loop, settings, session=KilledAfter(2, tmp_path))
    resumed = loop.run_in_process(training.family_loop, settings, session=loop.LocalSession(folder=tmp_path))
    assert resumed["history"] == whole["history"] and [row["epoch"] for row in whole["history"]] == [1, 2, 3]
    assert all(0 < row["valid_bits_per_char"] < 9 and row["train_bits_per_char"] > 0 for row in whole["history"])
    (a,), (b,) = whole["done"], resumed["done"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    model = registry.load(a)
    assert isinstance(model, Density) and isinstance(model, Sampler) and model.family == family
    test = torch.from_numpy(read_stream(characters, "test"))
    figures = stream_figures(model, test)
    assert figures["n_chars"] == len(test) and figures["estimator"] == "exact"
    nats = -float(model.log_prob(test[None].long()).detach())  # the stream as one sequence
    assert figures["bits_per_char"] == pytest.approx(nats / len(test) / math.log(2))
    assert model.sample(2, torch.Generator().manual_seed(1), length=5).shape == (2, 5)
