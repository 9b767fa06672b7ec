"""Evaluation as the field measures it, and the figures people look at.

Reconstruction error is Hinton & Salakhutdinov's (2006): the squared error
summed over the pixels of an image (intensities in [0, 1]), averaged over
test images. PCA with as many components as the code has units is the
baseline of the paper's Fig. 2, fitted on the training split.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from components.io import atomic_path  # noqa: E402
from components.models.autoencoder import DeepAutoencoder  # noqa: E402


def squared_error(X: np.ndarray, R: np.ndarray) -> float:
    """Mean over items of sum over pixels of (x - r)^2; X, R (N, D)."""
    return float(((X.astype(np.float64) - R) ** 2).sum(axis=1).mean())


def pca_reconstruct(X_train: np.ndarray, X_test: np.ndarray, n_components: int, seed: int = 0) -> np.ndarray:
    """Project the test set on the top principal components of the training set and back."""
    pca = PCA(n_components=n_components, random_state=seed).fit(X_train)
    return pca.inverse_transform(pca.transform(X_test))


@torch.no_grad()
def autoencoder_reconstruct(model: DeepAutoencoder, X: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    model.eval()
    parts = [model.reconstruct(torch.from_numpy(x)).numpy() for x in np.array_split(X, max(1, len(X) // batch_size))]
    return np.concatenate(parts)


@torch.no_grad()
def encode(model: DeepAutoencoder, X: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The codes (N, C) of X (N, D), in ``batch_sizes(N, batch_size)`` batches."""
    model.eval()
    return np.concatenate([model.encode(torch.from_numpy(x)).numpy()
                           for x in np.array_split(X, max(1, len(X) // batch_size))])


@torch.no_grad()
def encode_split(model: DeepAutoencoder, path: str | Path, batch_size: int = 1000) -> np.ndarray:
    """``encode(model, read_split's X)`` for the split file at ``path``, streamed from it: the
    same batches, so the same bits, and never more of the split dense than one batch."""
    from components.data.stream import SplitFile, dense_chunks

    model.eval()
    sizes = batch_sizes(SplitFile(path).n_rows, batch_size)
    return np.concatenate([model.encode(x).numpy() for x in dense_chunks(path, sizes)])


def batch_sizes(n_rows: int, batch_size: int) -> list[int]:
    """The rows of ``encode``'s batches: ``np.array_split`` into max(1, N // batch_size) parts
    (the first N mod parts one row longer). Batch shapes decide torch's float32 sums."""
    parts = max(1, n_rows // batch_size)
    size, longer = divmod(n_rows, parts)
    return [size + 1] * longer + [size] * (parts - longer)


def reconstruction_figure(path: str | Path, rows: dict[str, np.ndarray], shape: tuple[int, int],
                          errors: dict[str, float] | None = None) -> None:
    """A grid: one row of images per entry of ``rows`` (e.g. test / autoencoder / PCA)."""
    n = len(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.25 * len(rows) + 0.4), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(np.clip(images[c], 0, 1).reshape(shape), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        title = label if not errors or label not in errors else f"{label}  (error {errors[label]:.2f})"
        axes[r][0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("Test images and their reconstructions (squared error per image)", fontsize=10)
    _save(fig, path)


def filters_figure(path: str | Path, W: np.ndarray, shape: tuple[int, int], n: int = 100,
                   title: str | None = None) -> None:
    """The first layer's receptive fields: the weights into each of the first
    ``n`` hidden units, W[:, j] reshaped to the image, each scaled to its own range."""
    n = min(n, W.shape[1])
    columns = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.8, rows * 0.8 + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < n:
            w = W[:, k].reshape(shape)
            if len(shape) == 3:  # colour: scale each filter to [0, 1] for imshow
                w = (w - w.min()) / max(w.max() - w.min(), 1e-12)
            ax.imshow(w, cmap="gray")
    fig.suptitle(title or f"First-layer filters: weights into {n} of {W.shape[1]} hidden units", fontsize=10)
    _save(fig, path)


def learning_curves_figure(path: str | Path, pretrain: list[dict], finetune: list[dict]) -> None:
    """Pretraining reconstruction error per layer, and fine-tuning train/validation error."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for layer in sorted({row["layer"] for row in pretrain}):
        points = [(row["epoch"], row["recon_error"]) for row in pretrain if row["layer"] == layer]
        left.plot(*zip(*points), label=f"layer {layer}")
    left.set(title="Pretraining (CD): reconstruction error", xlabel="epoch", ylabel="squared error per item")
    left.legend()
    epochs = [row["epoch"] for row in finetune]
    right.plot(epochs, [row["train_squared_error"] for row in finetune], label="train")
    right.plot(epochs, [row["valid_squared_error"] for row in finetune], label="validation")
    right.set(title="Fine-tuning: squared reconstruction error", xlabel="epoch", ylabel="per image")
    right.legend()
    _save(fig, path)


def precision_recall_figure(path: str | Path, curves: dict[str, dict], title: str) -> None:
    """Precision against recall (log scale, as the semantic-hashing papers plot it), one line per method,
    and precision against the number retrieved."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, curve in curves.items():
        left.plot(curve["recall"], curve["precision"], marker=".", label=name)
        right.plot(curve["cutoff"], curve["precision"], marker=".", label=name)
    left.set(xscale="log", xlabel="recall", ylabel="precision", title="Precision-recall")
    right.set(xscale="log", xlabel="documents retrieved", ylabel="precision", title="Precision at n")
    left.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _save(fig, path: str | Path, tight: bool = True) -> None:
    if tight:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
