"""Codes and their baselines, evaluated side by side in one run.

``compare_methods`` ranks the database for a set of queries with each method
and returns its precision-recall curve (``evaluation.retrieval_curves``):

- the model's binary codes (Hamming distance);
- for word counts (Salakhutdinov & Hinton 2009's baselines): TF-IDF cosine
  over all words, LSA at the code's dimensionality (cosine) and
  random-hyperplane LSH with as many bits as the code (Hamming), all on
  TF-IDF vectors, which stay sparse (the counts may come dense or as the
  CSR matrices they are stored as; the ranking never densifies the
  database whole);
- for images: cosine over the raw pixels, PCA at the code's dimensionality
  (cosine) and LSH with as many bits (Hamming) on centred pixels.

The same inputs give the same bytes whatever the machine's load and thread
count: everything here runs with BLAS, OpenMP and torch on one thread (a
multithreaded reduction may sum in another order, and a near tie in cosine
then ranks the other way), and PCA and the image LSH projections are
computed in float64, so a last-bit difference between BLAS kernels rarely
survives the cast to float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import scipy.sparse
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from components.retrieval import baselines
from components.retrieval.codes import pack_bits
from components.retrieval.evaluation import retrieval_curves


def baseline_vectors(kind: str, X_train, X_query, bits: int,
                     seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """name -> (database, queries, metric) for the baselines of ``kind`` ("bow" or images).

    Word counts (N, V) may be dense or sparse (they are taken as float32 either way);
    images are dense (N, D)."""
    with one_thread():
        if kind == "bow":
            return _text_baselines(X_train, X_query, bits, seed)
        return _image_baselines(X_train, X_query, bits, seed)


def _text_baselines(X_train, X_query, bits: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    train, query = baselines.tfidf(*(scipy.sparse.csr_matrix(X, dtype=np.float32) for X in (X_train, X_query)))
    z_train, z_query = baselines.lsa(train, query, dimensions=bits, seed=seed)
    b_train, b_query = baselines.lsh(train, query, bits=bits, seed=seed)
    return {"TF-IDF (cosine, all words)": (train, query, "cosine"),  # CSR float32: ranked without densifying
            f"LSA-{bits} (cosine)": (z_train, z_query, "cosine"),
            f"LSH, {bits} bits": (pack_bits(b_train), pack_bits(b_query), "hamming")}


def _image_baselines(X_train, X_query, bits: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Pixels; PCA and LSH in float64 (projections handed on as float32, as the ranking reads them).
    LSH's hyperplanes r_b ~ N(0, I) cut through the mean: bit b is x . r_b > mean . r_b."""
    train, query = np.asarray(X_train, np.float64), np.asarray(X_query, np.float64)
    pca = PCA(n_components=bits, random_state=seed).fit(train)
    planes = np.random.default_rng(seed).standard_normal((train.shape[1], bits)).astype(np.float32).astype(np.float64)
    offsets = train.mean(axis=0) @ planes  # (bits,): no centred copy of the pixels
    return {"pixels (cosine)": (X_train, X_query, "cosine"),
            f"PCA-{bits} (cosine)": (pca.transform(train).astype(np.float32), pca.transform(query).astype(np.float32),
                                     "cosine"),
            f"LSH, {bits} bits": (pack_bits(train @ planes > offsets), pack_bits(query @ planes > offsets), "hamming")}


def compare_methods(methods: dict[str, tuple[np.ndarray, np.ndarray, str]], query_labels: np.ndarray,
                    database_labels: np.ndarray, cutoffs: np.ndarray | None = None,
                    ties: str = "index") -> dict[str, dict]:
    """name -> {"cutoff", "precision", "recall"} for each (database, queries, metric); ``ties``
    as ``retrieval_curves`` takes it."""
    with one_thread():
        return {name: retrieval_curves(queries, database, query_labels, database_labels, metric, cutoffs,
                                       ties=ties)
                for name, (database, queries, metric) in methods.items()}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """BLAS and OpenMP (NumPy's, SciPy's, scikit-learn's) and torch on one thread: the same
    sums in the same order, whatever the load. (torch's float32 matmul gives other bits
    on 8 threads than on 1 or 2, measured on the encoder's shapes.)"""
    import torch

    previous = torch.get_num_threads()
    with threadpool_limits(limits=1):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous)
