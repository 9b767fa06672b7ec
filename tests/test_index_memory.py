"""The index stage on a bag-of-words corpus never holds a split as a dense (N, V) matrix,
and what it and the evaluate stage compute from sparse counts instead (the cosine ranking,
the codes streamed from the split's file, perplexities, the 2-D PCA map) is what the dense
splits give, bit for bit."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse
import torch

from components.config import load_params
from components.data import read_split
from components.data.stream import chunk_sizes, dense_chunks
from components.data.text import read_bow_split, write_bow_split
from components.errors import DulError
from components.evaluation import encode, encode_split
from components.evaluation.documents import (autoencoder_perplexity, counts_map, mean_length, pca_solver,
                                             unigram_perplexity)
from components.evaluation.maps import project_2d
from components.io import save_torch, write_json
from components.models.autoencoder import DeepAutoencoder
from components.retrieval.evaluation import _similarities, _unit, dense_blocks, label_matrix, retrieval_curves
from pipelines import index as index_stage
from tests.conftest import write_params

SIZES = {"train": 8_000, "validation": 2_000, "test": 10_000}  # 20,000 documents
WORDS, LABELS, LENGTH = 10_000, 10, 40  # dense float32: 20,000 x 10,000 x 4 B = 800 MB


def topical_counts(rng, n_docs: int, n_words: int = WORDS, n_labels: int = LABELS, length: int = LENGTH):
    """(counts CSR (n, V), labels (n,)): each document draws ``length`` words, 70% from its
    label's band of the vocabulary, the rest uniformly."""
    labels = rng.integers(n_labels, size=n_docs)
    band = n_words // n_labels
    topical = rng.random((n_docs, length)) < 0.7
    words = np.where(topical, labels[:, None] * band + rng.integers(band, size=(n_docs, length)),
                     rng.integers(n_words, size=(n_docs, length)))
    rows = np.repeat(np.arange(n_docs), length)
    counts = scipy.sparse.coo_matrix((np.ones(rows.size, np.int32), (rows, words.ravel())),
                                     shape=(n_docs, n_words)).tocsr()
    counts.sum_duplicates()
    return counts, labels


def write_corpus(folder) -> None:
    rng = np.random.default_rng(0)
    vocabulary = [f"w{j:04d}" for j in range(WORDS)]
    for split, n_docs in SIZES.items():
        counts, labels = topical_counts(rng, n_docs)
        ids = [f"{split}/{i}" for i in range(n_docs)]
        write_bow_split(folder / f"{split}.parquet", ids, labels, counts, ids, vocabulary)
    write_json(folder / "card.json", {"dataset": "generated", "kind": "bow", "n_labels": LABELS,
                                      "label_names": [f"topic{k}" for k in range(LABELS)],
                                      "vocabulary_size": WORDS, "shape": [WORDS], "n_features": WORDS})


def test_the_index_stage_never_densifies_a_bag_of_words_split(workdir):
    write_corpus(workdir / "data/prepared")
    torch.manual_seed(0)
    save_torch(workdir / "models/autoencoder.pt", DeepAutoencoder((WORDS, 16, 8), "linear", "poisson").to_checkpoint())
    params = load_params("index", write_params(workdir, {"index": {"max_queries": 500}}))
    dense = sum(SIZES.values()) * WORDS * 4

    tracemalloc.start()
    try:
        read_split(workdir / "data/prepared", "validation")  # the instrument sees a dense split: 80 MB
        _, split_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        index_stage.work(params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert split_peak >= SIZES["validation"] * WORDS * 4
    assert peak < dense / 4, f"peak {peak / 2**20:.0f} MiB traced, the dense splits are {dense / 2**20:.0f} MiB"
    metrics = (workdir / "reports/index/metrics.json").read_text()
    assert '"n_items": 20000' in metrics and '"n_queries": 500' in metrics
    assert '"precision_at_100/tf_idf"' in metrics and (workdir / "index/search/tfidf.data.npy").is_file()


def random_tfidf(rng, n_rows: int, n_words: int, density: float) -> scipy.sparse.csr_matrix:
    """Sparse non-negative float32 rows, some empty, some repeated (exact ties in cosine)."""
    matrix = scipy.sparse.random(n_rows, n_words, density=density, format="csr", random_state=rng,
                                 dtype=np.float32)
    matrix.data = np.ceil(matrix.data * 4).astype(np.float32) * np.float32(0.37)  # few values: many ties
    matrix = scipy.sparse.lil_matrix(matrix)
    matrix[3] = 0
    matrix[5] = matrix[7]
    return scipy.sparse.csr_matrix(matrix)


@pytest.mark.parametrize("n_database, n_words, n_queries, block", [
    (300, 40, 117, 256),  # one block of database rows
    (5000, 2000, 117, 64),  # two blocks (2112 + 2888 rows), query blocks of 64
    (13000, 700, 3, 256),  # two blocks, a product of 3 queries: no BLAS small-matrix kernel for a block either
    (3001, 3, 117, 1000),  # three words
])
def test_sparse_cosine_ranking_equals_the_dense_one(n_database, n_words, n_queries, block):
    rng = np.random.default_rng(n_database)
    database = random_tfidf(rng, n_database, n_words, 0.05)
    queries = scipy.sparse.vstack([random_tfidf(rng, 97, n_words, 0.05), database[:20]]).tocsr()[:n_queries]
    query_labels = label_matrix(rng.integers(4, size=queries.shape[0]), 4)
    database_labels = label_matrix(rng.integers(4, size=n_database), 4)
    sparse = retrieval_curves(queries, database, query_labels, database_labels, "cosine", block=block)
    dense = retrieval_curves(queries.toarray(), database.toarray(), query_labels, database_labels, "cosine",
                             block=block)
    for key in ("cutoff", "precision", "recall"):
        assert np.array_equal(sparse[key], dense[key])
    # the similarities themselves, float32 bits
    unit_dense, unit_sparse = _unit(database.toarray()), _unit(database)
    assert scipy.sparse.issparse(unit_sparse) and np.array_equal(unit_sparse.toarray(), unit_dense)
    q = _unit(queries.toarray())[:block]
    assert np.array_equal(_similarities(q, unit_sparse), q @ unit_dense.T)


def test_dense_blocks_are_multiples_of_64_rows_of_at_least_4m_values():
    matrix = scipy.sparse.random(5000, 3000, density=0.001, format="csr", random_state=0)
    blocks = list(dense_blocks(matrix))  # 1408 rows: 64 * ceil(2**22 / (64 * 3000))
    assert [(rows.start, rows.stop) for rows, _ in blocks] == [(0, 1408), (1408, 2816), (2816, 5000)]
    assert np.array_equal(np.concatenate([dense for _, dense in blocks]), matrix.toarray())
    assert [rows.stop for rows, _ in dense_blocks(matrix[:2815])] == [2815]  # the remainder joins the last block
    assert [rows.stop for rows, _ in dense_blocks(matrix, rows=2000)] == [2000, 5000]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """Train and test splits of 2,500 and 1,300 documents over 300 words, in row groups of 1,000
    (chunks straddle them)."""
    from components.data import text

    folder = tmp_path_factory.mktemp("bow")
    rng = np.random.default_rng(1)
    vocabulary = [f"w{j:03d}" for j in range(300)]
    previous, text.ROW_GROUP_SIZE = text.ROW_GROUP_SIZE, 1000
    try:
        for split, n_docs in {"train": 2500, "test": 1300}.items():
            counts, labels = topical_counts(rng, n_docs, n_words=300, length=30)
            write_bow_split(folder / f"{split}.parquet", [str(i) for i in range(n_docs)], labels, counts,
                            [""] * n_docs, vocabulary)
    finally:
        text.ROW_GROUP_SIZE = previous
    return folder


def test_dense_chunks_are_the_slices_of_the_dense_split(small_corpus):
    X, _ = read_split(small_corpus, "train")
    sizes = [0, 999, 1, 1200, 300]  # 2500 rows, across the row groups
    chunks = list(dense_chunks(small_corpus / "train.parquet", sizes))
    assert [c.shape for c in chunks] == [(n, 300) for n in sizes]
    assert all(c.dtype == torch.float32 for c in chunks)
    assert np.array_equal(torch.cat(chunks).numpy(), X)
    assert np.array_equal(torch.cat(list(dense_chunks(small_corpus / "train.parquet", chunk_sizes(2500, 1000)))), X)
    with pytest.raises(DulError, match="more rows than its 2500"):
        list(dense_chunks(small_corpus / "train.parquet", [2000, 501]))


def test_streamed_codes_and_document_figures_equal_the_dense_ones(small_corpus):
    torch.manual_seed(0)
    model = DeepAutoencoder((300, 32, 6), "linear", "poisson").eval()
    train, _ = read_split(small_corpus, "train")
    test, _ = read_split(small_corpus, "test")
    train_counts, _, _ = read_bow_split(small_corpus / "train.parquet")
    test_counts, _, _ = read_bow_split(small_corpus / "test.parquet")
    assert np.array_equal(encode_split(model, small_corpus / "test.parquet"), encode(model, test))
    assert autoencoder_perplexity(model, test_counts) == autoencoder_perplexity(model, test)
    assert unigram_perplexity(train_counts, test_counts) == unigram_perplexity(train, test)
    assert mean_length(train_counts) == mean_length(train) == float(train.sum(axis=1).mean())
    log_p = np.log((train.sum(axis=0, dtype=np.float64) + 1) / (train.sum(axis=0, dtype=np.float64) + 1).sum())
    assert unigram_perplexity(train_counts, test_counts) == float(np.exp(-(test @ log_p).sum() / test.sum()))


@pytest.mark.parametrize("n_docs, n_words, solver, blocks", [
    (3000, 200, "covariance_eigh", 1),  # from the exact Gram matrix of the counts
    (45000, 200, "covariance_eigh", 2),  # the same, projected in two blocks of rows
    (400, 300, "full", 1),  # a small matrix: dense
    (1500, 3000, "randomized", 1),  # one block of rows, so exact
])
def test_the_pca_map_of_sparse_counts_equals_the_dense_one(n_docs, n_words, solver, blocks):
    counts, _ = topical_counts(np.random.default_rng(n_docs), n_docs, n_words=n_words, n_labels=5, length=30)
    from sklearn.decomposition import PCA

    dense = counts.toarray().astype(np.float32)
    assert PCA(n_components=2).fit(dense)._fit_svd_solver == pca_solver(n_docs, n_words) == solver
    assert len(list(dense_blocks(counts))) == blocks
    assert np.array_equal(counts_map(counts), project_2d(dense))


def test_the_randomized_pca_map_in_blocks_is_the_dense_one_to_rounding():
    """Over several blocks of rows the randomized solver's sums over the documents run in another
    order: the same map to rounding (and, drawn, the same picture)."""
    counts, _ = topical_counts(np.random.default_rng(2), 6000, n_words=2000, n_labels=5, length=30)
    assert pca_solver(6000, 2000) == "randomized" and len(list(dense_blocks(counts))) == 2
    sparse, dense = counts_map(counts), project_2d(counts.toarray().astype(np.float32))
    np.testing.assert_allclose(sparse, dense, rtol=0, atol=1e-12 * np.abs(dense).max())
