"""Codes and their baselines, evaluated side by side in one run.

``compare_methods`` ranks the database for a set of queries with each method
and returns its precision-recall curve (``evaluation.retrieval_curves``):

- the model's binary codes (Hamming distance);
- for word counts (Salakhutdinov & Hinton 2009's baselines): TF-IDF cosine
  over all words, LSA at the code's dimensionality (cosine) and
  random-hyperplane LSH with as many bits as the code (Hamming), all on
  TF-IDF vectors;
- for images: cosine over the raw pixels, PCA at the code's dimensionality
  (cosine) and LSH with as many bits (Hamming) on centred pixels.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from sklearn.decomposition import PCA

from components.retrieval import baselines
from components.retrieval.codes import pack_bits
from components.retrieval.evaluation import retrieval_curves


def baseline_vectors(kind: str, X_train: np.ndarray, X_query: np.ndarray, bits: int,
                     seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """name -> (database, queries, metric) for the baselines of ``kind`` ("bow" or images)."""
    if kind == "bow":
        train, query = baselines.tfidf(scipy.sparse.csr_matrix(X_train), scipy.sparse.csr_matrix(X_query))
        z_train, z_query = baselines.lsa(train, query, dimensions=bits, seed=seed)
        b_train, b_query = baselines.lsh(train, query, bits=bits, seed=seed)
        return {"TF-IDF (cosine, all words)": (train.toarray(), query.toarray(), "cosine"),
                f"LSA-{bits} (cosine)": (z_train, z_query, "cosine"),
                f"LSH, {bits} bits": (pack_bits(b_train), pack_bits(b_query), "hamming")}
    mean = X_train.mean(axis=0)
    pca = PCA(n_components=bits, random_state=seed).fit(X_train)
    planes = np.random.default_rng(seed).standard_normal((X_train.shape[1], bits)).astype(np.float32)
    return {"pixels (cosine)": (X_train, X_query, "cosine"),
            f"PCA-{bits} (cosine)": (pca.transform(X_train), pca.transform(X_query), "cosine"),
            f"LSH, {bits} bits": (pack_bits((X_train - mean) @ planes > 0), pack_bits((X_query - mean) @ planes > 0),
                                  "hamming")}


def compare_methods(methods: dict[str, tuple[np.ndarray, np.ndarray, str]], query_labels: np.ndarray,
                    database_labels: np.ndarray, cutoffs: np.ndarray | None = None) -> dict[str, dict]:
    """name -> {"cutoff", "precision", "recall"} for each (database, queries, metric)."""
    return {name: retrieval_curves(queries, database, query_labels, database_labels, metric, cutoffs)
            for name, (database, queries, metric) in methods.items()}
