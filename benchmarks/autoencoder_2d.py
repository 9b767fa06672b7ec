"""The paper's Fig. 3 on Fashion-MNIST: the 2-D codes of a pretrained and
fine-tuned 784-1000-500-250-2 autoencoder next to the first two principal
components, coloured by class (Hinton & Salakhutdinov 2006).

The stack is the paper's recipe (components.training.pretrain: CD-1, batch
100, lr 0.1, the linear 2-unit code layer at 0.001, momentum 0.5 then 0.9,
weight cost 0.0002). Its bottom three layers (784-1000-500-250) are the same
as the 30-D pipeline's, so ``--stack`` can take a pipeline's
``models/stack.pt`` (Fashion-MNIST, ``pretrain.hidden: [1000, 500, 250,
30]``) and only the 250-2 layer is trained here; without it all four layers
are. The unrolled net is fine-tuned with Adam (``finetune.train_epoch``,
the pipeline's own loop) on the training images.

Measured on the test images, for the autoencoder and for PCA-2 side by side:
squared reconstruction error per image (the paper's measure) and how well
the 2-D map separates the classes (accuracy of a 10-nearest-neighbour
classifier in the 2-D space, the training images' points as references).

    python benchmarks/autoencoder_2d.py --data /usr/share/datasets/fashion-mnist \\
        [--stack models/stack.pt] [--pretrain-epochs 50] [--finetune-epochs 30] \\
        [--out docs/figures/fashion-mnist-autoencoder-2d]

Writes OUT.png (the two maps) and OUT.json (the figures and settings).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier
from tqdm import tqdm

from components.data.idx import read_idx
from components.errors import DulError
from components.evaluation.maps import maps_figure
from components.models.autoencoder import DeepAutoencoder
from components.models.stack import layer_from_state
from components.training.finetune import squared_error, train_epoch
from components.training.pretrain import train_stack_in_memory

SIZES = [1000, 500, 250, 2]
RECIPE = {"hidden": SIZES, "code_units": "linear", "init_std": 0.1, "lr": 0.1, "lr_code": 0.001,
          "weight_decay": 0.0002, "momentum_initial": 0.5, "momentum_final": 0.9, "momentum_switch_epoch": 5,
          "batch_size": 100, "cd_k": 1}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]


def load(folder: Path, split: str) -> tuple[torch.Tensor, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255), labels.astype(np.int64)


def bottom_layers(path: Path | None) -> list:
    """The 784-1000-500-250 layers of a saved 30-D (or 2-D) stack; [] without one."""
    if path is None:
        return []
    stack = torch.load(path, weights_only=True)
    layers = [layer_from_state(state) for state in stack["layers"][:3]]
    shapes = [tuple(layer.W.shape) for layer in layers]
    if shapes != [(784, 1000), (1000, 500), (500, 250)]:
        raise DulError(f"{path}: its bottom layers are {shapes}, not 784-1000-500-250; give a stack "
                       "pretrained with pretrain.hidden: [1000, 500, 250, ...] on 784-pixel images, or no --stack")
    return layers


def knn_accuracy(train_points: np.ndarray, train_labels, test_points: np.ndarray, test_labels, k: int = 10) -> float:
    return float(KNeighborsClassifier(k).fit(train_points, train_labels).score(test_points, test_labels))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="folder with the four IDX .gz files (default: %(default)s)")
    parser.add_argument("--stack", type=Path, default=None,
                        help="a pipeline's models/stack.pt whose bottom three layers are 784-1000-500-250")
    parser.add_argument("--pretrain-epochs", type=int, default=50, help="CD-1 epochs per layer (default: %(default)s)")
    parser.add_argument("--finetune-epochs", type=int, default=30, help="Adam epochs (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.001, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N training images (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("autoencoder-2d"),
                        help="output path without suffix: OUT.png and OUT.json (default: %(default)s)")
    args = parser.parse_args(argv)
    X, y = load(args.data, "train")
    X, y = X[:args.limit], y[:args.limit]
    X_test, y_test = load(args.data, "test")
    below = bottom_layers(args.stack)

    start = time.perf_counter()
    bar = tqdm(total=(len(SIZES) - len(below)) * args.pretrain_epochs, desc="pretrain", unit="epoch")
    layers = train_stack_in_memory(X, RECIPE, args.pretrain_epochs, seed=args.seed, below=below,
                                   on_epoch=lambda index, stats: (bar.update(), bar.set_postfix(
                                       layer=index + 1, recon=f"{stats['recon_error']:.3f}")))
    bar.close()
    pretrain_seconds = time.perf_counter() - start

    model = DeepAutoencoder.from_rbms(layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history, start = [], time.perf_counter()
    n_batches = len(X) // 100
    for epoch in (bar := tqdm(range(args.finetune_epochs), desc="fine-tune", unit="epoch")):
        stats = train_epoch(model, optimizer, X, batch_size=100, n_batches=n_batches,
                            generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        history.append({"epoch": epoch + 1, **stats})
        bar.set_postfix(train_squared_error=f"{stats['train_squared_error']:.2f}")
    finetune_seconds = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        codes_train, codes_test = model.encode(X).numpy(), model.encode(X_test).numpy()
    pca = PCA(n_components=2, random_state=args.seed).fit(X.numpy())
    pca_train, pca_test = pca.transform(X.numpy()), pca.transform(X_test.numpy())
    pca_error = float(((pca.inverse_transform(pca_test) - X_test.numpy()) ** 2).sum(axis=1).mean())
    results = {
        "sizes": [784, *SIZES], "n_train": len(X), "n_test": len(X_test), "stack": str(args.stack or ""),
        "pretrain_epochs": args.pretrain_epochs, "finetune_epochs": args.finetune_epochs, "lr": args.lr,
        "pretrain_seconds": pretrain_seconds, "finetune_seconds": finetune_seconds,
        "test_squared_error": {"autoencoder": squared_error(model, X_test), "pca": pca_error},
        "knn10_test_accuracy": {"autoencoder": knn_accuracy(codes_train, y, codes_test, y_test),
                                "pca": knn_accuracy(pca_train, y, pca_test, y_test)},
        "history": history,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    maps_figure(args.out.with_suffix(".png"), {
        f"784-1000-500-250-2 autoencoder (test error {results['test_squared_error']['autoencoder']:.1f})": codes_test,
        f"PCA-2 (test error {pca_error:.1f})": pca_test,
    }, y_test, CLASSES)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print("| 2-D map of Fashion-MNIST test images | squared error per image | 10-NN accuracy in 2-D |")
    print("|---|---|---|")
    for name in ("autoencoder", "pca"):
        print(f"| {name} | {results['test_squared_error'][name]:.2f} | {results['knn10_test_accuracy'][name]:.1%} |")
    return results


if __name__ == "__main__":
    main()
