"""How well a document autoencoder models word counts.

The autoencoder's output is a distribution over the vocabulary (softmax);
its test *perplexity* is exp of the mean negative log-probability per word,

    perplexity = exp( - sum_d sum_i v_di log p_di / sum_d sum_i v_di ),

with p_d the model's reconstruction distribution for document d. The
reference is the unigram model of the training counts (add-one smoothed),
which ignores the document: a model that uses its code should do better.
"""

from __future__ import annotations

import numpy as np
import torch

from components.models.autoencoder import DeepAutoencoder


@torch.no_grad()
def autoencoder_perplexity(model: DeepAutoencoder, X: np.ndarray, batch_size: int = 1000) -> float:
    """Perplexity of counts X (N, V) under the autoencoder's reconstructions."""
    model.eval()
    total, words = 0.0, 0.0
    for start in range(0, len(X), batch_size):
        x = torch.from_numpy(X[start:start + batch_size])
        total -= (x * torch.log_softmax(model(x), dim=1)).sum().item()
        words += x.sum().item()
    return float(np.exp(total / max(words, 1.0)))


def unigram_perplexity(X_train: np.ndarray, X: np.ndarray) -> float:
    """Perplexity of X (N, V) under the add-one-smoothed unigram model of X_train."""
    counts = X_train.sum(axis=0, dtype=np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(np.exp(-(X @ log_p).sum() / max(X.sum(), 1.0)))
