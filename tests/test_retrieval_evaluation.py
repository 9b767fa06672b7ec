"""Retrieval precision/recall curves and the TF-IDF, LSA and LSH baselines."""

import numpy as np
import pytest
import scipy.sparse

from components.retrieval import pack_bits
from components.retrieval.baselines import lsa, lsh, tfidf
from components.retrieval.evaluation import default_cutoffs, label_matrix, retrieval_curves


def _brute(queries, database, q_labels, d_labels, metric, cutoffs):
    precision, recall = [], []
    for q, ql in zip(queries, q_labels):
        if metric == "hamming":
            dist = np.array([np.count_nonzero(q != d) for d in database])
        else:
            dist = -np.array([q @ d / (np.linalg.norm(q) * np.linalg.norm(d)) for d in database])
        order = np.argsort(dist, kind="stable")
        rel = np.array([bool(ql & dl) for dl in d_labels])
        precision.append([rel[order[:n]].sum() / n for n in cutoffs])
        if rel.any():
            recall.append([rel[order[:n]].sum() / rel.sum() for n in cutoffs])
    return np.mean(precision, axis=0), np.mean(recall, axis=0)


def test_hamming_curves_match_brute_force_with_multi_labels():
    rng = np.random.default_rng(0)
    bits_q, bits_d = rng.random((13, 10)) > 0.5, rng.random((57, 10)) > 0.5
    q_sets = [set(rng.choice(4, rng.integers(1, 3), replace=False)) for _ in range(13)]
    d_sets = [set(rng.choice(4, rng.integers(0, 3), replace=False)) for _ in range(57)]
    q_sets[0] = {3}
    d_sets = [s - {3} for s in d_sets]  # query 0 has no relevant document: left out of recall
    cutoffs = np.array([1, 5, 20, 57])
    curves = retrieval_curves(pack_bits(bits_q), pack_bits(bits_d), label_matrix(q_sets, 4), label_matrix(d_sets, 4),
                              "hamming", cutoffs, block=4)
    precision, recall = _brute(bits_q, bits_d, q_sets, d_sets, "hamming", cutoffs)
    assert np.allclose(curves["precision"], precision) and np.allclose(curves["recall"], recall)
    assert curves["recall"][-1] == pytest.approx(1.0)


def test_cosine_curves_match_brute_force():
    rng = np.random.default_rng(1)
    q, d = rng.standard_normal((9, 5)), rng.standard_normal((30, 5))
    ql, dl = rng.integers(0, 3, 9), rng.integers(0, 3, 30)
    cutoffs = default_cutoffs(30, points=6)
    curves = retrieval_curves(q, d, label_matrix(ql, 3), label_matrix(dl, 3), "cosine", cutoffs)
    precision, recall = _brute(q, d, [{x} for x in ql], [{x} for x in dl], "cosine", cutoffs)
    assert np.allclose(curves["precision"], precision, atol=1e-6) and np.allclose(curves["recall"], recall, atol=1e-6)


def test_perfect_codes_give_perfect_precision_until_the_class_runs_out():
    labels = np.repeat(np.arange(4), 25)
    bits = np.eye(4, dtype=bool)[labels]  # one code per class
    curves = retrieval_curves(pack_bits(bits), pack_bits(bits), label_matrix(labels), label_matrix(labels),
                              "hamming", np.array([1, 25, 50]))
    assert np.allclose(curves["precision"], [1.0, 1.0, 0.5]) and np.allclose(curves["recall"], [0.04, 1.0, 1.0])


def test_bad_cutoffs_and_metric():
    x = np.zeros((2, 1), np.uint8)
    labels = label_matrix(np.array([0, 1]))
    with pytest.raises(ValueError, match="cut-offs"):
        retrieval_curves(x, x, labels, labels, "hamming", np.array([3]))
    with pytest.raises(ValueError, match="metric"):
        retrieval_curves(x, x, labels, labels, "euclid")
    with pytest.raises(ValueError, match="packed uint8 codes"):
        retrieval_curves(x, scipy.sparse.csr_matrix(x), labels, labels, "hamming")
    with pytest.raises(ValueError, match="ties"):
        retrieval_curves(x, x, labels, labels, "hamming", ties="first")


def test_random_ties_are_the_mean_over_every_order_of_the_database():
    """ties="random" is exact: the index rule's curves averaged over all 7! orders of a
    database of 2-bit codes (runs of up to 4 tied documents, multi-label) are the same."""
    import itertools

    rng = np.random.default_rng(3)
    bits_d, bits_q = rng.random((7, 2)) > 0.5, rng.random((5, 2)) > 0.5
    d_labels = label_matrix([list(rng.choice(3, rng.integers(1, 3), replace=False)) for _ in range(7)], 3)
    q_labels = label_matrix([[0], [1], [2], [0, 2], [1]], 3)
    cutoffs = np.arange(1, 8)
    orders = list(itertools.permutations(range(7)))
    mean = {key: np.mean([retrieval_curves(pack_bits(bits_q), pack_bits(bits_d[list(order)]), q_labels,
                                           d_labels[list(order)], "hamming", cutoffs)[key] for order in orders], axis=0)
            for key in ("precision", "recall")}
    random = retrieval_curves(pack_bits(bits_q), pack_bits(bits_d), q_labels, d_labels, "hamming", cutoffs,
                              ties="random")
    index = retrieval_curves(pack_bits(bits_q), pack_bits(bits_d), q_labels, d_labels, "hamming", cutoffs)
    assert np.allclose(random["precision"], mean["precision"]) and np.allclose(random["recall"], mean["recall"])
    assert not np.allclose(index["precision"], random["precision"])  # the example does have order-dependent ties


def test_random_ties_agree_with_the_index_rule_where_nothing_ties_and_split_a_full_tie_evenly():
    rng = np.random.default_rng(4)
    q, d = rng.standard_normal((9, 6)), rng.standard_normal((40, 6))  # real vectors: no two cosines equal
    ql, dl = label_matrix(rng.integers(0, 3, 9), 3), label_matrix(rng.integers(0, 3, 40), 3)
    cutoffs = np.array([1, 5, 17, 40])
    for key in ("precision", "recall"):
        assert np.allclose(retrieval_curves(q, d, ql, dl, "cosine", cutoffs, ties="random")[key],
                           retrieval_curves(q, d, ql, dl, "cosine", cutoffs)[key])
    # one code for everything, the database sorted by label (as ingest stores it): the index rule gives
    # query 0 label 0's documents first; random ties give every cut-off the label's share, 10 of 40
    labels = label_matrix(np.repeat(np.arange(4), 10), 4)
    same = np.zeros((40, 1), np.uint8)
    index = retrieval_curves(same[:1], same, labels[:1], labels, "hamming", cutoffs)
    random = retrieval_curves(same[:1], same, labels[:1], labels, "hamming", cutoffs, ties="random")
    assert np.allclose(index["precision"], [1, 1, 10 / 17, 0.25]) and np.allclose(random["precision"], 0.25)
    assert np.allclose(random["recall"], cutoffs / 40)


def test_baselines_separate_two_topics():
    rng = np.random.default_rng(0)
    topic = np.repeat([0, 1], 40)
    words = np.where(topic[:, None] == 0, rng.poisson([3, 3, 0.1, 0.1, 1], (80, 5)), rng.poisson([0.1, 0.1, 3, 3, 1], (80, 5)))
    counts = scipy.sparse.csr_matrix(words)
    train, test = tfidf(counts[::2], counts[1::2])
    labels_train, labels_test = label_matrix(topic[::2]), label_matrix(topic[1::2])
    cut = np.array([10])
    dense = retrieval_curves(test.toarray(), train.toarray(), labels_test, labels_train, "cosine")
    assert dense["precision"][list(dense["cutoff"]).index(10)] > 0.9
    sparse = retrieval_curves(test, train, labels_test, labels_train, "cosine")  # the TF-IDF rows as they are
    assert all(np.array_equal(sparse[key], dense[key]) for key in dense)
    z_train, z_test = lsa(train, test, dimensions=2)
    assert z_train.shape == (40, 2)
    assert retrieval_curves(z_test, z_train, labels_test, labels_train, "cosine", cut)["precision"][0] > 0.9
    b_train, b_test = lsh(train, test, bits=16)
    assert b_train.shape == (40, 16) and b_train.dtype == bool
    precision = retrieval_curves(pack_bits(b_test), pack_bits(b_train), labels_test, labels_train, "hamming", cut)
    assert precision["precision"][0] > 0.8
