"""The baselines of the semantic-hashing papers, on bag-of-words counts.

- **TF-IDF** (Salton & Buckley 1988): each document's counts weighted by
  the inverse document frequency of the training collection, L2-normalised;
  compared by cosine similarity. scikit-learn's ``TfidfTransformer``
  (smooth idf, ``tf * (1 + log((1 + N) / (1 + df)))``).
- **LSA** (Deerwester et al. 1990): the TF-IDF vectors projected on their top
  ``d`` right singular vectors of the training collection (truncated SVD);
  cosine similarity, at the same dimensionality as a code.
- **LSH** (Charikar 2002, random-hyperplane hashing): ``bits`` signs of
  random Gaussian projections of the TF-IDF vectors; Hamming distance, at the
  same number of bits as a code.

Each baseline is fitted on the training (database) documents only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfTransformer


def tfidf(train_counts, *others) -> list[scipy.sparse.csr_matrix]:
    """TF-IDF vectors of the training counts and of every other (N, V) count matrix."""
    transformer = TfidfTransformer().fit(train_counts)
    return [transformer.transform(counts) for counts in (train_counts, *others)]


def lsa(train_tfidf, *others, dimensions: int, seed: int = 0) -> list[np.ndarray]:
    """Truncated-SVD projections (N, d) float32 of TF-IDF vectors, fitted on the training ones."""
    svd = TruncatedSVD(n_components=dimensions, random_state=seed).fit(train_tfidf)
    return [svd.transform(x).astype(np.float32) for x in (train_tfidf, *others)]


def lsh(train_tfidf, *others, bits: int, seed: int = 0) -> list[np.ndarray]:
    """Random-hyperplane bits (N, bits) bool: sign of x . r_b, r_b ~ N(0, I)."""
    planes = np.random.default_rng(seed).standard_normal((train_tfidf.shape[1], bits)).astype(np.float32)
    return [np.asarray(x @ planes) > 0 for x in (train_tfidf, *others)]
