"""How well a document autoencoder models word counts.

The autoencoder's output is a distribution over the vocabulary (softmax);
its test *perplexity* is exp of the mean negative log-probability per word,

    perplexity = exp( - sum_d sum_i v_di log p_di / sum_d sum_i v_di ),

with p_d the model's reconstruction distribution for document d. The
reference is the unigram model of the training counts (add-one smoothed),
which ignores the document: a model that uses its code should do better.

Counts (N, V) come dense or as the sparse (CSR) matrices a bag-of-words
split is stored as; a sparse split is densified a block of rows at a time
(never whole), and every figure is the one the dense split gives, bit for
bit. ``counts_map``, the documents' 2-D PCA map, is too, but for the
randomized solver over more than one block of rows (``_Centred``): its
sums over the documents then run in another order, equal to rounding.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.linalg
import scipy.sparse
import torch
from sklearn.utils.extmath import svd_flip

from components.models.autoencoder import DeepAutoencoder


@torch.no_grad()
def autoencoder_perplexity(model: DeepAutoencoder, X, batch_size: int = 1000) -> float:
    """Perplexity of counts X (N, V), dense or sparse, under the autoencoder's reconstructions."""
    model.eval()
    total, words = 0.0, 0.0
    for x in dense_batches(X, batch_size):
        x = torch.from_numpy(x)
        total -= (x * torch.log_softmax(model(x), dim=1)).sum().item()
        words += x.sum().item()
    return float(np.exp(total / max(words, 1.0)))


def unigram_perplexity(X_train, X, batch_size: int = 1000) -> float:
    """Perplexity of X (N, V) under the add-one-smoothed unigram model of X_train (dense or sparse).

    The log-probability of each document is summed row by row (``x @ log p`` on
    its dense float32 row, as for the whole matrix), the words as exact integers."""
    counts = np.asarray(X_train.sum(axis=0, dtype=np.float64)).ravel() + 1.0
    log_p = np.log(counts / counts.sum())
    scores, words = [np.zeros(0)], 0.0
    for x in dense_batches(X, batch_size):
        scores.append(x @ log_p)  # (b,) float64
        words += float(x.sum(dtype=np.float64))
    return float(np.exp(-np.concatenate(scores).sum() / max(words, 1.0)))


def mean_length(X) -> float:
    """The mean words per document of counts X (N, V), dense or sparse (float32, as X.sum(1).mean())."""
    return float(np.asarray(X.sum(axis=1)).ravel().astype(np.float32).mean())


def dense_batches(X, batch_size: int = 1000) -> Iterator[np.ndarray]:
    """Rows of X (N, V) ``batch_size`` at a time as float32 (b, V): slices of a dense X,
    densified slices of a sparse one."""
    for start in range(0, X.shape[0], batch_size):
        rows = X[start:start + batch_size]
        yield rows.toarray().astype(np.float32) if scipy.sparse.issparse(rows) else rows


def counts_map(X, seed: int = 0) -> np.ndarray:
    """``maps.project_2d`` of counts X (N, V), dense or sparse, without densifying a large X.

    The first two principal components by the solver scikit-learn's PCA picks
    for a dense X of this shape (``pca_solver``): the covariance matrix, from
    the exact integer Gram matrix (so the same bits); a full SVD of a small X,
    densified (at most 500 x 500, or under 3 rows or columns); else the
    randomized SVD (7 or 4 LU-normalised power iterations) of X centred a
    block of rows at a time."""
    from components.evaluation.maps import project_2d

    n, v = X.shape
    solver = pca_solver(n, v)
    if not scipy.sparse.issparse(X) or v == 2 or solver == "full":
        return project_2d(X.toarray() if scipy.sparse.issparse(X) else X, seed)
    X = scipy.sparse.csr_matrix(X, dtype=np.float64)
    mean = np.asarray(X.sum(axis=0)).ravel() / n  # exact integer sums, as np.mean of the dense counts
    if solver == "covariance_eigh":
        return _covariance_map(X, mean)
    return _randomized_map(_Centred(X, mean), seed)


def pca_solver(n: int, v: int) -> str:
    """The solver of scikit-learn's ``PCA(n_components=2)`` (``svd_solver="auto"``) for a dense (n, v) X."""
    if v <= 1000 and n >= 10 * v:
        return "covariance_eigh"  # tall and skinny
    if max(n, v) <= 500 or min(n, v) < 3:  # small, or 2 components not under 0.8 min(n, v)
        return "full"
    return "randomized"


def _covariance_map(X: scipy.sparse.csr_matrix, mean: np.ndarray) -> np.ndarray:
    """scikit-learn's covariance_eigh PCA: eigenvectors of (X'X - n m m') / (n - 1), then X V - m V."""
    n = X.shape[0]
    C = (X.T @ X).toarray()  # integer sums: exact in any order
    C -= n * mean.reshape(-1, 1) * mean.reshape(1, -1)
    C /= n - 1
    _, vectors = np.linalg.eigh(C)
    _, Vt = svd_flip(None, np.flip(vectors, axis=1).T, u_based_decision=False)
    components = np.array(Vt[:2])  # (2, V) laid out as scikit-learn keeps it (Fortran order): the same BLAS calls
    projected = np.concatenate([rows @ components.T for rows in _Centred(X, 0).blocks()])
    projected -= mean.reshape(1, -1) @ components.T
    return projected


def _randomized_map(M: _Centred, seed: int) -> np.ndarray:
    """scikit-learn's randomized PCA (``_randomized_svd``, 10 oversamples) of the centred counts M."""
    n, v = M.shape
    transpose = n < v  # it factors M' then, the smaller side second
    forward, backward = (M.T_dot, M.dot) if transpose else (M.dot, M.T_dot)  # A @ Q and A' @ Q
    Q = np.random.RandomState(seed).normal(size=(n if transpose else v, 12))
    for _ in range(7 if 2 < 0.1 * min(n, v) else 4):
        Q = scipy.linalg.lu(forward(Q), permute_l=True, check_finite=False)[0]
        Q = scipy.linalg.lu(backward(Q), permute_l=True, check_finite=False)[0]
    Q, _ = scipy.linalg.qr(forward(Q), mode="economic", check_finite=False)
    U_hat, s, Vt = scipy.linalg.svd(backward(Q).T, full_matrices=False, lapack_driver="gesdd")  # B = Q' A
    U, Vt = (Vt[:2].T, (Q @ U_hat)[:, :2].T) if transpose else ((Q @ U_hat)[:, :2], Vt[:2])
    U, _ = svd_flip(U.copy(), Vt.copy(), u_based_decision=False)
    return U * s[:2]


class _Centred:
    """The dense centred counts X - mean (N, V), as products, a block of rows at a time."""

    def __init__(self, X: scipy.sparse.csr_matrix, mean):
        self.X, self.mean, self.shape = X, mean, X.shape

    def blocks(self) -> Iterator[np.ndarray]:
        """Dense (b, V) rows, b a multiple of 1024 (the last block absorbs the rest), as for the
        retrieval ranking: BLAS then gives each row's product the whole matrix's bits."""
        from components.retrieval.evaluation import dense_blocks

        for _, rows in dense_blocks(self.X):
            yield rows - self.mean

    def dot(self, Q: np.ndarray) -> np.ndarray:  # (N, V) @ (V, k)
        return np.concatenate([rows @ Q for rows in self.blocks()])

    def T_dot(self, Q: np.ndarray) -> np.ndarray:  # (V, N) @ (N, k)
        total, start = np.zeros((self.shape[1], Q.shape[1])), 0
        for rows in self.blocks():
            total += rows.T @ Q[start:start + len(rows)]
            start += len(rows)
        return total
