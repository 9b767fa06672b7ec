"""Neighbourhood targets (Laplacian eigenmaps of the TF-IDF k-NN graph) and fine-tuning towards them."""

import json

import numpy as np
import pytest
import scipy.sparse
import torch

from components.errors import DulError
from components.models.autoencoder import DeepAutoencoder
from components.retrieval import baselines
from components.retrieval.spectral import knn_graph, spectral_targets
from components.training.finetune import neighbour_epoch


def two_topics(n_per_topic: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Counts (2n, 24): topic 0 draws words 0-9, topic 1 words 10-19; words 20-23 are shared noise."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((2 * n_per_topic, 24), np.float32)
    labels = np.repeat([0, 1], n_per_topic)
    for row, topic in enumerate(labels):
        words = rng.choice(10, size=6) + 10 * topic
        np.add.at(counts[row], words, 1)
        np.add.at(counts[row], rng.choice(4, size=2) + 20, 1)
    return counts, labels


def test_knn_graph_is_the_brute_force_neighbourhood_made_symmetric():
    counts = np.random.default_rng(1).poisson(0.7, (45, 200)).astype(np.float32)  # no tied similarities
    (vectors,) = baselines.tfidf(scipy.sparse.csr_matrix(counts))
    graph = knn_graph(vectors, neighbours=4, block=7).toarray()  # blocks that do not divide N
    similarity = (vectors @ vectors.T).toarray()
    np.fill_diagonal(similarity, -np.inf)
    expected = np.zeros_like(graph)
    for row in range(len(similarity)):
        nearest = np.argsort(-similarity[row])[:4]
        expected[row, nearest] = similarity[row, nearest]
    expected = np.maximum(expected, expected.T)
    assert np.allclose(graph, expected) and (np.diag(graph) == 0).all() and ((graph > 0).sum(1) >= 4).all()


def test_spectral_targets_separate_two_topics_and_are_reproducible():
    counts, labels = two_topics()
    targets = spectral_targets(counts, dimensions=2, neighbours=5)
    assert targets.shape == (60, 2) and targets.dtype == np.float32
    assert np.allclose(targets.std(axis=0), 1.0, atol=1e-4)
    first = targets[:, 0]
    assert (np.sign(first[labels == 0]) != np.sign(first[labels == 1][0])).all()  # one sign per topic
    assert (np.sign(first[labels == 1]) == np.sign(first[labels == 1][0])).all()
    assert np.array_equal(targets, spectral_targets(counts, dimensions=2, neighbours=5))


def test_fewer_eigenvectors_give_rotated_copies_of_their_coordinates():
    counts, _ = two_topics()
    base = spectral_targets(counts, dimensions=3, neighbours=5)
    targets = spectral_targets(counts, dimensions=8, neighbours=5, eigenvectors=3)
    assert targets.shape == (60, 8) and np.allclose(targets.std(axis=0), 1.0, atol=1e-4)
    assert np.allclose(targets[:, :3], base, atol=1e-5)  # the eigenvectors first, as they are
    for block in (targets[:, 3:6], targets[:, 6:8]):  # then the same coordinates, rotated
        mixing, *_ = np.linalg.lstsq(base, block, rcond=None)
        assert np.allclose(base @ mixing, block, atol=1e-4)  # a linear map of the 3 coordinates ...
        gram = mixing.T @ mixing
        assert np.allclose(gram, gram[0, 0] * np.eye(block.shape[1]), atol=0.05)  # ... whose columns are orthogonal
        assert not np.allclose(np.abs(mixing), np.eye(3)[:, :block.shape[1]], atol=0.1)  # and not the eigenvectors
    assert np.array_equal(targets, spectral_targets(counts, 8, 5, eigenvectors=3))  # seeded
    assert not np.allclose(targets, spectral_targets(counts, 8, 5, seed=1, eigenvectors=3))
    assert np.array_equal(spectral_targets(counts, 3, 5, eigenvectors=3), base)  # as many: the eigenvectors
    assert np.array_equal(spectral_targets(counts, 3, 5, eigenvectors=0), base)
    with pytest.raises(DulError, match="eigenvectors is -1"):
        spectral_targets(counts, 3, 5, eigenvectors=-1)


@pytest.mark.parametrize("dimensions, neighbours, problem", [
    (2, 60, "neighbours must be between 1"), (2, 0, "neighbours must be between 1"),
    (59, 5, "fewer dimensions than documents"),
])
def test_spectral_targets_reject_sizes_the_corpus_cannot_give(dimensions, neighbours, problem):
    counts, _ = two_topics()
    with pytest.raises(DulError, match=problem):
        spectral_targets(counts, dimensions, neighbours)


def test_documents_without_neighbours_get_the_centre_and_leave_the_others_alone():
    counts, labels = two_topics()
    counts[3] = 0  # an empty document (bydate with a 2,000-word vocabulary has 23) has no neighbour
    targets = spectral_targets(counts, 2, neighbours=5)
    assert (targets[3] == 0).all()
    others = np.delete(targets[:, 0], 3)
    kept = np.delete(labels, 3)
    assert len(set(np.sign(others[kept == 0]))) == 1 and len(set(np.sign(others[kept == 1]))) == 1
    assert np.sign(others[kept == 0][0]) != np.sign(others[kept == 1][0])
    counts[4:] = 0  # three documents left with words (row 3 is empty): too few for 2 dimensions
    with pytest.raises(DulError, match="only 3 of 60 documents share a word with another"):
        spectral_targets(counts, 2, neighbours=3)


def test_neighbour_fine_tuning_pulls_the_codes_towards_the_targets():
    counts, labels = two_topics()
    data = torch.from_numpy(counts)
    targets = torch.from_numpy(spectral_targets(counts, dimensions=2, neighbours=5))
    torch.manual_seed(0)
    model = DeepAutoencoder([24, 16, 2], code_units="binary", input_units="poisson")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    stats = [neighbour_epoch(model, optimizer, data, targets, batch_size=10,
                             generator=torch.Generator().manual_seed(epoch), code_noise=1.0)
             for epoch in range(40)]
    assert stats[-1]["train_neighbour_error"] < 0.4 * stats[0]["train_neighbour_error"]
    with torch.no_grad():
        first_bit = model.encode(data)[:, 0] > 0.5
    agreement = (first_bit.numpy() == (targets[:, 0] > 0).numpy()).mean()
    assert agreement > 0.9  # the first code bit now splits the topics as the targets do
    with pytest.raises(DulError, match=r"neighbourhood targets are \(60, 3\)"):
        neighbour_epoch(model, optimizer, data, torch.zeros(60, 3), batch_size=10,
                        generator=torch.Generator(), code_noise=1.0)


def test_code_inputs_are_what_encode_squashes():
    torch.manual_seed(0)
    model = DeepAutoencoder([24, 16, 4], code_units="binary", input_units="poisson")
    x = torch.from_numpy(two_topics()[0])
    assert torch.allclose(torch.sigmoid(model.code_inputs(x)), model.encode(x))


def two_topic_corpus(folder, n_per_topic: int = 30):
    """train / validation / test splits of ``two_topics`` as the ingest writes word counts."""
    from components.data.text import write_bow_split

    words = [f"w{i}" for i in range(24)]
    for split, seed in (("train", 0), ("validation", 1), ("test", 2)):
        counts, labels = two_topics(n_per_topic, seed)
        write_bow_split(folder / f"{split}.parquet", [f"{split}{i}" for i in range(len(labels))], labels,
                        scipy.sparse.csr_matrix(counts.astype(np.int32)), ["t"] * len(labels), words)
    card = {"dataset": "two-topics", "kind": "bow", "label_names": ["a", "b"], "multi_label": False,
            "n_features": 24, "n_labels": 2, "shape": [24], "vocabulary_size": 24}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_the_finetune_stage_trains_towards_neighbourhood_targets(workdir, in_process, one_thread):
    from components.config import parse_section
    from components.io import save_torch
    from components.training import finetune, pretrain

    data = two_topic_corpus(workdir)
    stack = pretrain.pretrain_stack(data, parse_section("pretrain", {
        "hidden": [16, 2], "code_units": "binary", "visible_units": "poisson", "epochs": 1, "batch_size": 10,
        "max_failures": 0}), key="s")
    save_torch(workdir / "stack.pt", {"layers": stack["layers"]})
    tuned = finetune.finetune_autoencoder(data, workdir / "stack.pt", parse_section("finetune", {
        "epochs": 6, "lr": 0.03, "batch_size": 10, "code_noise": 1.0, "neighbours": 5, "max_failures": 0}), key="n")
    errors = [row["train_neighbour_error"] for row in tuned["history"]]
    assert len(errors) == 6 and errors[-1] < 0.6 * errors[0]


@pytest.mark.parametrize("values, problem", [
    ({"neighbours": 5, "optimizer": "cg"}, "finetune.neighbours .5. trains with adam or sgd"),
    ({"neighbours": 5, "num_workers": 2}, "finetune.num_workers: 1"),
    ({"neighbours": -1}, "neighbours"),
    ({"neighbours": 5, "neighbour_dimensions": -2}, "neighbour_dimensions"),
])
def test_neighbourhood_fine_tuning_names_the_settings_it_cannot_run_with(values, problem):
    from components.config import parse_section

    with pytest.raises(DulError, match=problem):
        parse_section("finetune", values)


def test_neighbourhood_targets_need_word_counts():
    from components.config import parse_section
    from components.data.stream import as_batches
    from components.training.finetune import neighbourhood_targets

    net = DeepAutoencoder([24, 8, 2], code_units="binary", input_units="bernoulli")
    params = parse_section("finetune", {"neighbours": 5})
    with pytest.raises(DulError, match="inputs are bernoulli; set finetune.neighbours: 0"):
        neighbourhood_targets(net, params, as_batches(torch.rand(60, 24), 10, 6))
    assert neighbourhood_targets(net, parse_section("finetune", {}), None) is None
    counts = torch.from_numpy(two_topics()[0])
    words = DeepAutoencoder([24, 8, 2], code_units="binary", input_units="poisson")
    with pytest.raises(DulError, match=r"neighbour_dimensions \(3\) is more than the code's 2 bits"):
        neighbourhood_targets(words, parse_section("finetune", {"neighbours": 5, "neighbour_dimensions": 3}),
                              as_batches(counts, 10, 6))
    rotated = neighbourhood_targets(words, parse_section("finetune", {"neighbours": 5, "neighbour_dimensions": 1}),
                                    as_batches(counts, 10, 6))
    assert rotated.shape == (60, 2) and torch.allclose(rotated[:, 0], torch.from_numpy(
        spectral_targets(counts.numpy(), 1, 5)[:, 0]), atol=1e-5)
