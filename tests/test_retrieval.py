"""Retrieval: codes and Hamming kNN against brute force, and the index file."""

import re

import numpy as np
import pytest

from components.errors import DulError
from components.retrieval import (
    FORMAT,
    binarize,
    fit_thresholds,
    format_results,
    hamming_distances,
    knn,
    load_index,
    pack_bits,
    precision_at_k,
    search,
    write_index,
)
from components.retrieval.evaluation import label_matrix


def random_bits(rng, n, n_bits):
    return rng.random((n, n_bits)) < 0.5


def brute_force_knn(bits_q, bits_d, k, exclude=None):
    """Full stable argsort of the bool-compared distance matrix."""
    dist = (bits_q[:, None, :] != bits_d[None, :, :]).sum(axis=2)  # (Q, N)
    if exclude is not None:
        rows = np.flatnonzero(exclude >= 0)
        dist = dist.copy()
        dist[rows, exclude[rows]] = 10**6  # after everything, so never in the top k
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, axis=1)


# ---- codes -----------------------------------------------------------------


@pytest.mark.parametrize("n_bits", [1, 8, 10, 30, 64, 100])
def test_hamming_distances_equal_bool_count(n_bits):
    rng = np.random.default_rng(n_bits)
    bits_q, bits_d = random_bits(rng, 13, n_bits), random_bits(rng, 29, n_bits)
    expected = (bits_q[:, None, :] != bits_d[None, :, :]).sum(axis=2)
    got = hamming_distances(pack_bits(bits_q), pack_bits(bits_d))
    assert got.dtype == np.int32 and got.shape == (13, 29)
    np.testing.assert_array_equal(got, expected)


def test_pack_bits_shape_and_round_trip():
    bits = random_bits(np.random.default_rng(0), 5, 30)
    packed = pack_bits(bits)
    assert packed.shape == (5, 4) and packed.dtype == np.uint8
    np.testing.assert_array_equal(np.unpackbits(packed, axis=1, count=30).astype(bool), bits)


@pytest.mark.parametrize("n_bits, block", [(5, 7), (10, 1), (30, 1024)])
def test_knn_equals_stable_argsort_with_ties(n_bits, block):
    # Few bits and many items force many tied distances.
    rng = np.random.default_rng(n_bits)
    bits_q, bits_d = random_bits(rng, 37, n_bits), random_bits(rng, 50, n_bits)
    indices, distances = knn(pack_bits(bits_q), pack_bits(bits_d), 12, block=block)
    expected_indices, expected_distances = brute_force_knn(bits_q, bits_d, 12)
    assert indices.dtype == np.int64 and distances.dtype == np.int32
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(distances, expected_distances)


def test_knn_exclude_leaves_out_own_item():
    rng = np.random.default_rng(1)
    bits = random_bits(rng, 40, 6)
    exclude = np.arange(40)
    exclude[::5] = -1  # some queries exclude nothing
    indices, distances = knn(pack_bits(bits), pack_bits(bits), 39, exclude=exclude, block=6)
    expected_indices, expected_distances = brute_force_knn(bits, bits, 39, exclude)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(distances, expected_distances)
    own = indices == np.arange(40)[:, None]
    assert not own[exclude >= 0].any() and own[exclude < 0].any(axis=1).all()


def test_knn_all_items_and_bad_arguments():
    bits = random_bits(np.random.default_rng(2), 9, 4)
    packed = pack_bits(bits)
    indices, _ = knn(packed, packed, 9)
    np.testing.assert_array_equal(indices, brute_force_knn(bits, bits, 9)[0])
    for bad in (dict(k=0), dict(k=10), dict(k=9, exclude=np.arange(9)), dict(k=2, block=0)):
        with pytest.raises(ValueError):
            knn(packed, packed, **bad)
    with pytest.raises(ValueError):
        knn(packed, pack_bits(random_bits(np.random.default_rng(3), 9, 12)), 2)


def test_precision_at_k_hand_computed():
    database_labels = np.array([0, 1, 0, 2, 1])
    query_labels = np.array([0, 1])
    neighbors = np.array([[2, 1, 0], [3, 4, 1]])
    # query 0: hit, miss, hit -> 1, 1/2, 2/3; query 1: miss, hit, hit -> 0, 1/2, 2/3
    expected = np.array([(1 + 0) / 2, (1 / 2 + 1 / 2) / 2, (2 / 3 + 2 / 3) / 2])
    np.testing.assert_allclose(precision_at_k(query_labels, database_labels, neighbors), expected)


def test_fit_thresholds_balance_bits():
    rng = np.random.default_rng(0)
    # Units with different means and scales: a fixed threshold of 0 would not balance them.
    codes = rng.normal(loc=np.linspace(-2, 3, 16), scale=np.linspace(0.1, 4, 16), size=(2000, 16))
    thresholds = fit_thresholds(codes)
    assert thresholds.shape == (16,) and thresholds.dtype == np.float32
    ones = binarize(codes, thresholds).mean(axis=0)
    np.testing.assert_allclose(ones, 0.5, atol=0.002)
    assert np.abs((codes > 0).mean(axis=0) - 0.5).max() > 0.4  # the test can tell


# ---- index file ------------------------------------------------------------


def make_index(tmp_path, n=20, n_bits=10, seed=0, **meta):
    rng = np.random.default_rng(seed)
    fields = dict(
        bits=random_bits(rng, n, n_bits),
        labels=rng.integers(0, 3, n),
        splits=np.array(["train", "validation", "test", "train"] * (n // 4)),
        item_ids=np.arange(n) * 3,
        thresholds=rng.normal(size=n_bits).astype(np.float32),
        meta={"dataset": "toy", **meta},
    )
    path = tmp_path / "index.npz"
    write_index(path, **fields)
    return path, fields


def test_write_load_round_trip(tmp_path):
    path, fields = make_index(tmp_path, label_names=["zero", "one", "two"])
    index = load_index(path)
    assert index.n_bits == 10 and len(index) == 20
    np.testing.assert_array_equal(index.packed, pack_bits(fields["bits"]))
    np.testing.assert_array_equal(index.labels, fields["labels"])
    np.testing.assert_array_equal(index.splits, fields["splits"])
    np.testing.assert_array_equal(index.item_ids, fields["item_ids"])
    np.testing.assert_array_equal(index.thresholds, fields["thresholds"])
    assert index.meta == {
        "dataset": "toy",
        "label_names": ["zero", "one", "two"],
        "format": FORMAT,
        "n_bits": 10,
    }
    assert index.labels.dtype == np.int64 and index.splits.dtype == np.dtype("<U10")
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]  # no temporaries left


def test_write_index_rejects_mismatched_lengths_and_writes_nothing(tmp_path):
    path = tmp_path / "index.npz"
    with pytest.raises(ValueError, match="labels"):
        write_index(
            path, bits=np.zeros((4, 8), bool), labels=[0, 1, 2], splits=["train"] * 4,
            item_ids=range(4), thresholds=np.zeros(8), meta={},
        )
    assert list(tmp_path.iterdir()) == []


def save_members(path, **members):
    with open(path, "wb") as f:
        np.savez(f, **members)


def good_members(path):
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def corrupt_truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def corrupt_missing_member(path):
    members = good_members(path)
    del members["labels"]
    save_members(path, **members)


def corrupt_lengths(path):
    members = good_members(path)
    members["item_ids"] = members["item_ids"][:-1]
    save_members(path, **members)


def corrupt_format(path):
    members = good_members(path)
    members["meta"] = np.array('{"format": "dul-index/0", "n_bits": 10}')
    save_members(path, **members)


def corrupt_n_bits(path):
    members = good_members(path)
    members["meta"] = np.array(f'{{"format": "{FORMAT}", "n_bits": 20}}')
    save_members(path, **members)


def corrupt_bare_array(path):
    np.save(open(path, "wb"), np.zeros(3))


@pytest.mark.parametrize(
    "corrupt, problem",
    [
        (corrupt_truncated, "damaged"),
        (corrupt_garbage, "damaged"),
        (corrupt_missing_member, "lacks labels"),
        (corrupt_lengths, "item_ids"),
        (corrupt_format, "dul-index/0"),
        (corrupt_n_bits, "n_bits 20"),
        (corrupt_bare_array, "bare array"),
    ],
)
def test_load_index_errors_name_file_and_fix(tmp_path, corrupt, problem):
    path, _ = make_index(tmp_path)
    corrupt(path)
    with pytest.raises(DulError) as caught:
        load_index(path)
    message = str(caught.value)
    assert str(path) in message and problem in message and "dvc repro index" in message
    assert "\n" not in message


def test_load_index_missing_file(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(DulError, match=re.escape(f"{path} does not exist")):
        load_index(path)


# ---- search ----------------------------------------------------------------


def test_search_excludes_item_and_sorts(tmp_path):
    path, fields = make_index(tmp_path, n=40, n_bits=6)
    index = load_index(path)
    results = search(index, 7, k=15)
    assert [r["rank"] for r in results] == list(range(1, 16))
    assert all(r["item"] != 7 for r in results)
    expected_rows, expected_distances = brute_force_knn(
        fields["bits"][7:8], fields["bits"], 15, exclude=np.array([7])
    )
    assert [r["item"] for r in results] == expected_rows[0].tolist()
    assert [r["distance"] for r in results] == expected_distances[0].tolist()
    first = results[0]
    assert first["split"] == fields["splits"][first["item"]]
    assert first["item_id"] == fields["item_ids"][first["item"]]
    assert first["label"] == fields["labels"][first["item"]]
    assert len(search(index, 0, k=100)) == 39  # only 39 other items exist


@pytest.mark.parametrize("item, k", [(20, 5), (-1, 5), (3, 0), (3, -2)])
def test_search_rejects_bad_item_or_k(tmp_path, item, k):
    index = load_index(make_index(tmp_path)[0])
    with pytest.raises(DulError, match="19" if item != 3 else "k >= 1"):
        search(index, item, k)


def test_format_results_has_query_line_and_rows(tmp_path):
    path, fields = make_index(tmp_path, label_names=["zero", "one", "two"])
    index = load_index(path)
    results = search(index, 5, k=4)
    text = format_results(index, 5, results, seconds=0.0123)
    lines = text.splitlines()
    label = fields["labels"][5]
    names = ["zero", "one", "two"]
    assert lines[0] == (
        f"query: item 5 (validation #15), label {label} ({names[label]}), 10 bits, 20 items"
    )
    assert len(lines) == 1 + 1 + 4 + 1  # query, column names, 4 rows, footer
    for line, result in zip(lines[2:6], results):
        expected = [result["rank"], result["item"], result["split"], result["item_id"]]
        assert line.split()[:4] == [str(value) for value in expected]
    same = sum(r["label"] == label for r in results)
    assert lines[-1] == f"{same} of 4 share the query's label; searched in 12.3 ms"


def digits_comparison_inputs(n_bits=10):
    """The index stage's _compare inputs on scikit-learn's digits: a random linear "encoder"."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    parts = {"train": order[:1300], "test": order[1300:]}
    weights = np.random.default_rng(1).standard_normal((64, n_bits)).astype(np.float32)
    data = {split: (X[rows], y[rows].astype(np.int64)) for split, rows in parts.items()}
    codes = {split: x @ weights for split, (x, _) in data.items()}
    thresholds = fit_thresholds(codes["train"])
    bits = {split: binarize(c, thresholds) for split, c in codes.items()}
    card = {"dataset": "digits", "kind": "images", "n_labels": 10}
    label_sets = {split: label_matrix(y, 10) for split, (_, y) in data.items()}
    return card, data, label_sets, bits, codes, np.arange(len(parts["test"]))


def test_the_comparison_writes_the_same_bytes_on_one_and_two_threads(workdir):
    import torch
    from threadpoolctl import threadpool_limits

    from pipelines.index import REPORTS, _compare

    inputs, written, previous = digits_comparison_inputs(), {}, torch.get_num_threads()
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            with threadpool_limits(limits=threads):
                metrics = _compare(*inputs, "autoencoder")
            written.setdefault(threads, set()).add(((REPORTS / "pr_curves.csv").read_bytes(), str(metrics)))
    finally:
        torch.set_num_threads(previous)
    assert len(written[1]) == 1 and written[1] == written[2]
    [(csv, _)] = written[1]
    rows = [row.split(b",") for row in csv.splitlines()[1:]]
    assert {row[0] for row in rows} == {b"autoencoder", b"autoencoder real-valued codes", b"pixels (cosine)",
                                        b"PCA-10 (cosine)", b"LSH"}  # names with a comma lose the rest


def test_baselines_and_ranking_run_on_one_thread_and_pca_in_float64(monkeypatch):
    """What makes the bytes independent of load: no multithreaded BLAS or torch sum, no float32 PCA."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from components.retrieval import compare
    from components.retrieval.evaluation import label_matrix

    seen = []

    def threads_now():
        return {pool["num_threads"] for pool in threadpool_info()} | {torch.get_num_threads()}

    class RecordingPCA(compare.PCA):
        def fit(self, X, y=None):
            seen.append(("pca", X.dtype, threads_now()))
            return super().fit(X, y)

    def recording_curves(*args, **kwargs):
        seen.append(("ranking", None, threads_now()))
        return retrieval_curves(*args, **kwargs)

    retrieval_curves = compare.retrieval_curves
    monkeypatch.setattr(compare, "PCA", RecordingPCA)
    monkeypatch.setattr(compare, "retrieval_curves", recording_curves)
    _, data, _, _, _, _ = digits_comparison_inputs()
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threadpool_limits(limits=2):
            methods = compare.baseline_vectors("images", data["train"][0], data["test"][0], 10)
            compare.compare_methods(methods, label_matrix(data["test"][1], 10), label_matrix(data["train"][1], 10))
            assert threads_now() == {2}  # restored afterwards
    finally:
        torch.set_num_threads(previous)
    assert seen[0] == ("pca", np.float64, {1}) and len(seen) == 4 and all(s[2] == {1} for s in seen)
    assert methods["PCA-10 (cosine)"][0].dtype == np.float32


def test_precision_counts_a_neighbour_sharing_any_label_of_a_multi_label_query():
    """Reuters-style label sets: the field's rule (a hit shares at least one label), not the first label only."""
    from components.retrieval import precision_at_k

    database = label_matrix([[0], [1, 2], [2], [0, 1]], 3)
    queries = label_matrix([[1, 2], [0]], 3)
    neighbours = np.array([[1, 0, 2], [2, 3, 1]])
    # query 0 {1, 2}: hit, miss, hit; query 1 {0}: miss, hit, miss
    assert precision_at_k(queries, database, neighbours).tolist() == pytest.approx([0.5, 0.5, 1 / 2])
    first_only = precision_at_k(np.array([1, 0]), np.array([0, 1, 2, 0]), neighbours)  # first labels: fewer hits
    assert first_only.tolist() == pytest.approx([0.5, 0.5, 1 / 3])


def test_read_label_sets_of_a_single_label_dataset_is_one_hot(tmp_path):
    from components.data import ingest, read_label_sets, read_split

    ingest("digits", tmp_path / "prepared")
    sets = read_label_sets(tmp_path / "prepared", "test")
    _, y = read_split(tmp_path / "prepared", "test")
    assert sets.shape == (len(y), 10) and (sets.sum(1) == 1).all() and (sets.argmax(1) == y).all()


@pytest.mark.parametrize("family", ["vdsh", "nash"])
def test_the_semantic_hashing_benchmark_trains_a_peer_and_keeps_its_best_validation_epoch(family):
    import torch

    from benchmarks.semantic_hashing import train_peer

    counts = torch.from_numpy(np.random.default_rng(0).poisson(1.0, (60, 30)).astype(np.float32))
    scores = iter([0.1, 0.5, 0.3, 0.2])  # before training, then after each of three epochs: epoch 1 is best
    model, kept = train_peer(family, 4, counts, epochs=3, seed=0, select=lambda m: next(scores), hidden=8)
    assert kept == 1 and model.code_size == 4 and model.encode(counts).shape == (60, 4)
    _, last = train_peer(family, 4, counts, epochs=2, seed=0, hidden=8)
    assert last == 2  # without a selector: the last epoch
