"""DBN-pretrained 784-500-500-2000-10 classifier next to the same net from
random weights, on Fashion-MNIST (Hinton & Salakhutdinov 2006's classifier).

Pretraining is the paper's recipe (components.training.pretrain: CD-1,
lr 0.1, momentum 0.5 then 0.9, weight cost 0.0002, binary units, each layer
on the hidden probabilities of the one below). Both nets are then fine-tuned
by backpropagating the label cross-entropy with Adam for the same number of
epochs, on the same batches in the same order, and their test error rates are
reported side by side (no early stopping: the last epoch is reported).

    python benchmarks/dbn_classifier.py --data /usr/share/datasets/fashion-mnist \
        [--pretrain-epochs 50] [--finetune-epochs 30] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from components.data.idx import read_idx
from components.models.classifier import DBNClassifier
from components.training.pretrain import train_stack_in_memory

SIZES = (500, 500, 2000)
RECIPE = {"hidden": list(SIZES), "code_units": "binary", "init_std": 0.1, "lr": 0.1, "lr_code": 0.001,
          "weight_decay": 0.0002, "momentum_initial": 0.5, "momentum_final": 0.9, "momentum_switch_epoch": 5}


def load(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    X = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255)
    return X, torch.from_numpy(labels.astype(np.int64))


def pretrain(X: torch.Tensor, epochs: int, seed: int) -> list:
    """Greedy CD-1 stack, paper recipe; returns the trained layers bottom to top."""
    bar = tqdm(total=len(SIZES) * epochs, desc="pretrain", unit="epoch")

    def progress(index: int, stats: dict) -> None:
        bar.update()
        bar.set_postfix(layer=index + 1, recon=f"{stats['recon_error']:.2f}")

    layers = train_stack_in_memory(X, RECIPE, epochs, seed=seed, on_epoch=progress)
    bar.close()
    return layers


def finetune(model: DBNClassifier, X, y, X_test, y_test, epochs: int, lr: float, seed: int, desc: str) -> list[dict]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch"):
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed + epoch))
        model.train()
        for batch in order.split(100):
            loss = model.loss(X[batch], y[batch])["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        history.append({"epoch": epoch + 1, "train_error": model.error_rate(X, y),
                        "test_error": model.error_rate(X_test, y_test)})
    return history


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="folder with the four IDX .gz files (default: %(default)s)")
    parser.add_argument("--pretrain-epochs", type=int, default=50, help="CD-1 epochs per layer (default: %(default)s)")
    parser.add_argument("--finetune-epochs", type=int, default=30, help="backprop epochs (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.001, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N training images (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    X, y = load(args.data, "train")
    X, y = X[:args.limit], y[:args.limit]
    X_test, y_test = load(args.data, "test")
    start = time.perf_counter()
    layers = pretrain(X, args.pretrain_epochs, args.seed)
    pretrain_seconds = time.perf_counter() - start
    torch.manual_seed(args.seed)
    nets = {"DBN-pretrained": DBNClassifier.from_rbms(layers, 10), "random init": DBNClassifier([784, *SIZES], 10)}
    results = {"sizes": [784, *SIZES, 10], "pretrain_epochs": args.pretrain_epochs, "n_train": len(X),
               "finetune_epochs": args.finetune_epochs, "pretrain_seconds": pretrain_seconds, "runs": {}}
    for name, net in nets.items():
        history = finetune(net, X, y, X_test, y_test, args.finetune_epochs, args.lr, args.seed, name)
        results["runs"][name] = {"test_error": history[-1]["test_error"], "history": history}
    print("| 784-500-500-2000-10 on Fashion-MNIST | test error (last epoch) | best epoch's test error |")
    print("|---|---|---|")
    for name, run in results["runs"].items():
        best = min(row["test_error"] for row in run["history"])
        print(f"| {name} | {run['test_error']:.2%} | {best:.2%} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
