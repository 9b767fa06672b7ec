"""A trained DBM fine-tuned into a classifier (Salakhutdinov & Hinton 2009, section 4),
next to the same net from random weights, on a labelled prepared dataset.

The DBM is a zoo checkpoint (models/zoo/dbm.pt, from ``dvc repro train@dbm``);
the data is the folder it was trained on (data/prepared). Each item's input
is its intensities v in [0, 1] and the DBM's mean-field marginals q2 of the top
layer (``MeanFieldClassifier.augment``, computed once and fixed), as in the
paper. Both nets (components/models/classifier.py: DBM-initialised, and the
same net with PyTorch's default initialisation) are fine-tuned by Adam on the
label cross-entropy for the same epochs, on the same batches in the same order.
The epoch kept is the one with the lowest validation error; its test error is
the figure (the test split is read for nothing else).

    python benchmarks/dbm_classifier.py --data data/prepared --model models/zoo/dbm.pt \
        [--epochs 30] [--lr 0.001] [--out docs/results/dbm-classifier.json]

Prints the CPU, each net's per-epoch validation error (progress bar) and a
table: net, epoch kept, validation and test error, fine-tuning seconds.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from components.data import read_split
from components.errors import DulError
from components.models import registry
from components.models.classifier import MeanFieldClassifier
from components.training.pretrain import cpu_line

SPLITS = ("train", "validation", "test")



def finetune(net: MeanFieldClassifier, data: dict, epochs: int, lr: float, batch_size: int, seed: int,
             desc: str) -> dict:
    """Adam on the cross-entropy; the state with the lowest validation error is kept and scored on test."""
    (X, y), (X_valid, y_valid) = data["train"], data["validation"]
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    best = {"valid_error": net.error_rate(X_valid, y_valid), "epoch": 0, "state": copy.deepcopy(net.state_dict())}
    history, start = [], time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, unit="epoch")
    for epoch in bar:
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed + epoch))
        net.train()
        for batch in order.split(batch_size):
            loss = net.loss(X[batch], y[batch])["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        valid_error = net.error_rate(X_valid, y_valid)
        history.append({"epoch": epoch + 1, "valid_error": valid_error})
        bar.set_postfix(valid_error=f"{valid_error:.4f}")
        if valid_error < best["valid_error"]:
            best = {"valid_error": valid_error, "epoch": epoch + 1, "state": copy.deepcopy(net.state_dict())}
    seconds = time.perf_counter() - start
    net.load_state_dict(best["state"])
    return {"epoch_kept": best["epoch"], "valid_error": best["valid_error"],
            "test_error": net.error_rate(*data["test"]), "finetune_seconds": round(seconds, 1), "history": history}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python benchmarks/dbm_classifier.py --data data/prepared "
                                            "--model models/zoo/dbm.pt --out dbm-classifier.json")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"),
                        help="a prepared, labelled image dataset (default: %(default)s)")
    parser.add_argument("--model", type=Path, default=Path("models/zoo/dbm.pt"),
                        help="a dbm checkpoint trained on that data (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs per net (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.001, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=100, help="(default: %(default)s)")
    parser.add_argument("--mean-field-steps", type=int, default=50,
                        help="mean-field sweeps for q2, once per item (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        dbm = registry.load(args.model)
        if dbm.family != "dbm":
            raise DulError(f"{args.model} is a {dbm.family} checkpoint; give a dbm one (models/zoo/dbm.pt)")
        data = {}
        for split in SPLITS:
            X, y = read_split(args.data, split)
            if (y < 0).all():
                raise DulError(f"{args.data} has no labels: a classifier needs a labelled dataset")
            v = torch.from_numpy(X.reshape(len(X), -1)).float()
            if v.shape[1] != dbm.n_inputs:
                raise DulError(f"{args.data}'s items have {v.shape[1]} values, the DBM {dbm.n_inputs} inputs: "
                               "give the data it was trained on")
            data[split] = (MeanFieldClassifier.augment(dbm, v, args.mean_field_steps), torch.as_tensor(y.copy()).long())
    except DulError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(cpu_line())
    n_classes = int(data["train"][1].max()) + 1
    torch.manual_seed(args.seed)
    nets = {"dbm-initialised": MeanFieldClassifier.from_dbm(dbm, n_classes),
            "random init": MeanFieldClassifier(dbm.n_inputs, (dbm.W1.shape[1], dbm.code_size), n_classes)}
    results = {"model": str(args.model), "data": str(args.data), "cpu": cpu_line(),
               "sizes": [dbm.n_inputs, dbm.W1.shape[1], dbm.code_size, n_classes],
               "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "n": {split: len(data[split][1]) for split in SPLITS}, "runs": {}}
    for name, net in nets.items():
        results["runs"][name] = finetune(net, data, args.epochs, args.lr, args.batch_size, args.seed, name)
    print(f"| net ({'-'.join(map(str, results['sizes']))}, input [v, q2]) | epoch kept | validation error "
          "| test error | seconds |")
    print("|---|---|---|---|---|")
    for name, run in results["runs"].items():
        print(f"| {name} | {run['epoch_kept']} | {run['valid_error']:.2%} | {run['test_error']:.2%} | "
              f"{run['finetune_seconds']:.0f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
