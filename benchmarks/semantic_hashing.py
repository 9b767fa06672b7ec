"""Semantic hashing on 20 Newsgroups at 8-128 bits, next to LSH, LSA and TF-IDF, in one run.

Salakhutdinov & Hinton (2009): a constrained-Poisson RBM on the 2000-word
counts, a binary RBM above it, and a top binary RBM of ``bits`` units are
pretrained greedily (the paper's 2000-500-500-bits net), unrolled and
fine-tuned with Gaussian noise (std ``--code-noise``) on the code layer's
inputs, so the codes become nearly binary; codes are the code units
thresholded at their training medians. The two lower layers are shared by
every code length (they do not depend on it), as they would be in the
pipeline with the same params. Test documents query the training documents;
relevant = same newsgroup. Baselines on the same queries: TF-IDF cosine over
all words, LSA (cosine) at the same dimensionality, random-hyperplane LSH
with as many bits.

    python benchmarks/semantic_hashing.py --data data/prepared [--bits 8 16 32 64 128] [--peers vdsh nash]
        [--select] [--out results.json]

``--peers`` trains the field's baselines too, as dul's zoo families (VDSH:
Chaidaroon & Fang 2017; NASH: Shen et al. 2018), at every length, on the
same files, with the same median thresholds and the same queries; with
``--select`` every method keeps its epoch with the best validation
precision@100 (never the test split's).

``--neighbours K [K ...]`` adds one row per K: the same pretrained net
fine-tuned towards the Laplacian eigenmaps of the training documents' K-NN
graph (``finetune.neighbours: K``). With ``--select``, the row "ours, chosen on
validation" is, at each length, whichever of our rows (the paper's objective
or a K) has the highest validation precision@100; its name is recorded.
``--neighbour-dimensions D [D ...]`` gives each K one row per D: targets from D
eigenvectors, the code's other bits following random rotations of them
(``finetune.neighbour_dimensions``; 0, the default, one eigenvector per bit).

``--ties`` orders documents at the same distance, for the validation choices
and the table: ``random`` (the default) in a uniformly random order, in exact
expectation; ``index`` the lower database index first, the rule of every
figure stored before it, which with a database stored newsgroup by newsgroup
favours the low newsgroups inside a Hamming ball (8-bit codes: a ball holds
hundreds of posts; see components/retrieval/evaluation.py). Each length's
results also hold every test row by the other rule (``by_other_ties_rule``),
so one run shows what the rule moves.

``--data`` is an ingested 20newsgroups folder (``ingest.dataset:
20newsgroups``; the pipeline's data/prepared or any ``dul stage ingest``
output).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from components.data import read_split
from components.models.autoencoder import DeepAutoencoder
from components.retrieval import binarize, fit_thresholds, pack_bits
from components.retrieval.compare import baseline_vectors, compare_methods
from components.retrieval.evaluation import TIES, label_matrix
from components.retrieval.spectral import spectral_targets
from components.training.finetune import make_optimizer as finetune_optimizer
from components.training.finetune import neighbour_epoch
from components.training.finetune import train_epoch as finetune_epoch
from components.training.pretrain import build_layer, make_optimizer, train_epoch


def pretrain_layer(index: int, data: torch.Tensor, params: dict, epochs: int, seed: int):
    torch.manual_seed(seed + index)
    layer = build_layer(index, data.shape[1], params)
    optimizer = make_optimizer(layer, index, params)
    for epoch in tqdm(range(epochs), desc=f"layer {index + 1} ({data.shape[1]}->{params['hidden'][index]})"):
        for group in optimizer.param_groups:
            group["momentum"] = 0.5 if epoch < 5 else 0.9
        train_epoch(layer, optimizer, data, batch_size=100, n_batches=len(data) // 100, cd_k=1,
                    generator=torch.Generator().manual_seed(seed * 1000 + index * 100 + epoch))
    with torch.no_grad():
        return layer, layer.h_mean(data)


def cached_layers(args, params: dict):
    """pretrain_layer, reading and writing ``args.cache`` when it is set."""
    def layer(index: int, data: torch.Tensor, layer_params: dict):
        if args.cache is None:
            return pretrain_layer(index, data, layer_params, args.epochs, args.seed)
        key = f"{Path(args.data).resolve()}|{args.epochs}|{args.lr_poisson}|{args.seed}|{layer_params['hidden'][:index + 1]}"
        path = args.cache / f"layer{index}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
        if path.exists():
            trained = build_layer(index, data.shape[1], layer_params)
            trained.load_state_dict(torch.load(path, weights_only=True))
        else:
            trained, _ = pretrain_layer(index, data, layer_params, args.epochs, args.seed)
            args.cache.mkdir(parents=True, exist_ok=True)
            torch.save(trained.state_dict(), path.with_suffix(".tmp"))
            path.with_suffix(".tmp").replace(path)
        with torch.no_grad():
            return trained, trained.h_mean(data)
    return layer


def finetune(layers, data: torch.Tensor, epochs: int, noise: float, seed: int, method: str = "adam",
             select=None, targets: torch.Tensor | None = None) -> tuple[DeepAutoencoder, int]:
    """Fine-tune; with ``select`` (model -> score, higher is better, evaluated before
    training and after every epoch) return the best-scoring model and its epoch.
    With ``targets`` (N, bits), Adam on the reconstruction plus the neighbourhood
    targets (``neighbour_epoch``) instead."""
    model = DeepAutoencoder.from_rbms(layers)
    optimizer = finetune_optimizer(model, {"optimizer": method, "lr": 0.001})
    batch_size = 100 if method == "adam" else 1000
    torch.manual_seed(seed)
    best = (select(model.eval()), 0, copy.deepcopy(model.state_dict())) if select else None
    what = "finetune" if targets is None else "neighbourhood finetune"
    for epoch in tqdm(range(epochs), desc=f"{what} ({model.code_size} bits)"):
        model.train()
        generator = torch.Generator().manual_seed(seed + epoch)
        if targets is not None:
            neighbour_epoch(model, optimizer, data, targets, batch_size=100, generator=generator, code_noise=noise)
        else:
            finetune_epoch(model, optimizer, data, batch_size=batch_size, n_batches=len(data) // batch_size,
                           generator=generator, input_units=model.input_units,
                           code_noise=noise, code_size=model.code_size,
                           method=None if method == "adam" else method)
        if select and (score := select(model.eval())) > best[0]:
            best = (score, epoch + 1, copy.deepcopy(model.state_dict()))
    if best is None:
        return model.eval(), epochs
    model.load_state_dict(best[2])
    return model.eval(), best[1]


PEERS = ("vdsh", "nash")  # the field's baselines, as dul's zoo families (components/models/vdsh.py, nash.py)


def train_peer(family: str, bits: int, data: torch.Tensor, epochs: int, seed: int, select=None, hidden: int = 500):
    """A zoo family of document codes (VDSH or NASH) at ``bits``, trained by its own ``training_step``
    (Adam 1e-3, batches of 100, the papers' settings) on the training counts; with ``select``, the
    epoch with the best validation score (evaluated before training and after every epoch)."""
    from components.config import parse_dataclass
    from components.models import registry

    values = {"bits": bits, "hidden": hidden, "epochs": epochs, "batch_size": 100, "lr": 0.001, "seed": seed}
    if family == "vdsh":
        values["kl_warmup"] = max(1, epochs // 5)
    params = parse_dataclass(registry.params_class(family), family, values)
    torch.manual_seed(seed)
    model = registry.build(family, params, (data.shape[1],))
    model.fit_inputs(data)
    optimizers = model.optimizers(params)
    best = (select(model.eval()), 0, copy.deepcopy(model.state_dict())) if select else None
    for epoch in tqdm(range(epochs), desc=f"{family} ({bits} bits)"):
        if hasattr(model, "start_epoch"):
            model.start_epoch(epoch)
        model.train()
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + epoch))
        for batch in order.split(100):
            model.training_step(data[batch], optimizers)
        if select and (score := select(model.eval())) > best[0]:
            best = (score, epoch + 1, copy.deepcopy(model.state_dict()))
    if best is None:
        return model.eval(), epochs
    model.load_state_dict(best[2])
    return model.eval(), best[1]


CHOSEN = "ours, chosen on validation"


def neighbour_row(k: int, eigenvectors: int = 0) -> str:
    return f"semantic hashing + neighbourhood (K={k})" if not eigenvectors else \
        f"semantic hashing + neighbourhood (K={k}, {eigenvectors} eigenvectors)"


def neighbour_settings(neighbours: list[int], dimensions: list[int], bits: int) -> list[tuple[int, int]]:
    """(K, eigenvectors) of every neighbourhood row at ``bits``: eigenvectors 0 (one per bit) stands for any
    count of at least ``bits``, so a length gets each distinct setting once."""
    settings = [(k, d if d < bits else 0) for k in neighbours for d in dimensions]
    return list(dict.fromkeys(settings))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="ingested 20newsgroups folder (data/prepared)")
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--epochs", type=int, default=20, help="CD epochs per layer (default: %(default)s)")
    parser.add_argument("--finetune-epochs", type=int, default=20, help="(default: %(default)s)")
    parser.add_argument("--lr-poisson", type=float, default=0.003, help="first layer's CD rate (default: %(default)s)")
    parser.add_argument("--code-noise", type=float, default=4.0, help="std of the code-layer noise (default: %(default)s)")
    parser.add_argument("--optimizer", choices=["adam", "cg"], default="adam",
                        help="fine-tuning: Adam on batches of 100, or the paper's conjugate gradients on batches "
                             "of 1,000 (3 line searches each) (default: %(default)s)")
    parser.add_argument("--select", action="store_true",
                        help="keep the fine-tuning epoch (0 = the pretrained net) whose codes give the highest "
                             "precision@100 for the validation documents querying the training documents")
    parser.add_argument("--neighbours", type=int, nargs="*", default=[], metavar="K",
                        help="also fine-tune the same pretrained net towards Laplacian-eigenmap targets of the "
                             "training documents' K-nearest-neighbour TF-IDF graph (components/retrieval/"
                             "spectral.py), one more 'ours' row per K (default: none)")
    parser.add_argument("--neighbour-dimensions", type=int, nargs="+", default=[0], metavar="D",
                        help="eigenvectors each neighbourhood row's targets come from (finetune.neighbour_dimensions):"
                             " 0 one per bit; D below the code's bits: the other bits follow random rotations of "
                             "D eigenvectors; one row per K and D (default: 0)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the pretrained layers in this folder and reuse them on the next run "
                             "with the same data, epochs, rates and seed")
    parser.add_argument("--peers", nargs="*", choices=PEERS, default=[],
                        help="also train these zoo families at every length, on the same data (VDSH, NASH)")
    parser.add_argument("--peer-epochs", type=int, default=50, help="epochs of each peer (default: %(default)s)")
    parser.add_argument("--ties", choices=TIES, default="random",
                        help="documents at the same distance: 'random' (a uniformly random order, in exact "
                             "expectation) or 'index' (lower database index first, the rule of the figures "
                             "stored before it) (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.neighbours):
        parser.error(f"--neighbours takes positive K values, got {args.neighbours}")
    if any(d < 0 for d in args.neighbour_dimensions):
        parser.error(f"--neighbour-dimensions takes 0 or positive counts, got {args.neighbour_dimensions}")
    X_train, y_train = read_split(args.data, "train")
    X_test, y_test = read_split(args.data, "test")
    X_valid, y_valid = read_split(args.data, "validation")
    data = torch.from_numpy(X_train)
    # hidden[2], the code size, is set per run below (1 here: the params need a valid size)
    params = {"hidden": [500, 500, 1], "code_units": "binary", "init_std": 0.01, "lr": 0.1, "lr_code": 0.001,
              "lr_layers": [args.lr_poisson, 0.1, 0.1], "weight_decay": 0.0002, "momentum_initial": 0.5,
              "visible_units": "poisson"}
    start = time.perf_counter()
    cached = cached_layers(args, params)
    first, h1 = cached(0, data, params)
    second, h2 = cached(1, h1, params)
    labels_train, labels_test, labels_valid = (label_matrix(y, 20) for y in (y_train, y_test, y_valid))

    def validation_precision(model) -> float:
        with torch.no_grad():
            codes_train, codes_valid = model.encode(data).numpy(), model.encode(torch.from_numpy(X_valid)).numpy()
        thresholds = fit_thresholds(codes_train)
        curves = compare_methods({"codes": (pack_bits(binarize(codes_train, thresholds)),
                                            pack_bits(binarize(codes_valid, thresholds)), "hamming")},
                                 labels_valid, labels_train, np.array([100]), ties=args.ties)
        return float(curves["codes"]["precision"][0])
    results = {"n_train": len(y_train), "n_test": len(y_test), "epochs": args.epochs, "neighbours": args.neighbours,
               "neighbour_dimensions": args.neighbour_dimensions,
               "finetune_epochs": args.finetune_epochs, "code_noise": args.code_noise,
               "optimizer": args.optimizer, "select": args.select, "ties": args.ties, "rows": {}}
    for bits in args.bits:
        top, _ = cached(2, h2, {**params, "hidden": [500, 500, bits]})
        model, epoch = finetune([first, second, top], data, args.finetune_epochs, args.code_noise, args.seed,
                                args.optimizer, validation_precision if args.select else None)
        with torch.no_grad():
            codes_train, codes_test = model.encode(data).numpy(), model.encode(torch.from_numpy(X_test)).numpy()
        thresholds = fit_thresholds(codes_train)
        methods = {"semantic hashing": (pack_bits(binarize(codes_train, thresholds)),
                                        pack_bits(binarize(codes_test, thresholds)), "hamming")}
        methods |= baseline_vectors("bow", X_train, X_test, bits, args.seed)
        ours = {"semantic hashing": model}
        kept_neighbours = {}
        for k, d in neighbour_settings(args.neighbours, args.neighbour_dimensions, bits):
            targets = torch.from_numpy(spectral_targets(X_train, bits, k, args.seed, eigenvectors=d))
            net, kept_neighbours[neighbour_row(k, d)] = finetune(
                [first, second, top], data, args.finetune_epochs, args.code_noise, args.seed, "adam",
                validation_precision if args.select else None, targets)
            with torch.no_grad():
                net_train, net_test = net.encode(data).numpy(), net.encode(torch.from_numpy(X_test)).numpy()
            net_thresholds = fit_thresholds(net_train)
            methods[neighbour_row(k, d)] = (pack_bits(binarize(net_train, net_thresholds)),
                                            pack_bits(binarize(net_test, net_thresholds)), "hamming")
            ours[neighbour_row(k, d)] = net
        validation = {name: validation_precision(net) for name, net in ours.items()} if args.select else {}
        kept = {}
        for family in args.peers:
            peer, kept[family] = train_peer(family, bits, data, args.peer_epochs, args.seed,
                                            validation_precision if args.select else None)
            with torch.no_grad():
                peer_train, peer_test = peer.encode(data).numpy(), peer.encode(torch.from_numpy(X_test)).numpy()
            peer_thresholds = fit_thresholds(peer_train)  # each code unit at its training median (VDSH's rule)
            methods[family.upper()] = (pack_bits(binarize(peer_train, peer_thresholds)),
                                       pack_bits(binarize(peer_test, peer_thresholds)), "hamming")
        curves = compare_methods(methods, labels_test, labels_train, np.array([100]), ties=args.ties)
        other_rule = next(rule for rule in TIES if rule != args.ties)
        other = compare_methods(methods, labels_test, labels_train, np.array([100]), ties=other_rule)
        if len(validation) > 1:  # the row a user would deploy: the best of ours on validation, never on test
            chosen = max(validation, key=validation.get)
            curves[CHOSEN], other[CHOSEN] = curves[chosen], other[chosen]
        near_binary = float(((codes_train < 0.1) | (codes_train > 0.9)).mean())
        results["rows"][bits] = {name: float(c["precision"][0]) for name, c in curves.items()} | \
            {"codes_within_0.1_of_0_or_1": near_binary, "finetune_epochs_kept": epoch} | \
            {f"epochs_kept ({name})": e for name, e in kept_neighbours.items()} | \
            ({"validation_precision_at_100": validation} if validation else {}) | \
            ({"chosen_on_validation": chosen} if len(validation) > 1 else {}) | \
            {f"{family}_epochs_kept": e for family, e in kept.items()} | \
            {"by_other_ties_rule": {"ties": other_rule} | {name: float(c["precision"][0]) for name, c in other.items()}}
        print(bits, results["rows"][bits], flush=True)
    results["seconds"] = time.perf_counter() - start
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    rows = [neighbour_row(k, d) for bits in results["rows"]
            for k, d in neighbour_settings(args.neighbours, args.neighbour_dimensions, bits)]
    peers = [family.upper() for family in args.peers] + list(dict.fromkeys(rows)) + \
        ([CHOSEN] if args.select and args.neighbours else [])
    print("| bits | semantic hashing | TF-IDF (all words) | LSA, same dims | LSH, same bits |"
          + "".join(f" {name} |" for name in peers) + "\n|---|---|---|---|---|" + "---|" * len(peers))
    for bits, row in results["rows"].items():
        print(f"| {bits} | " + " | ".join(f"{value:.3f}" for value in list(row.values())[:4]) + " |"
              + "".join(f" {row[name]:.3f} |" if name in row else " – |" for name in peers))
    return results


if __name__ == "__main__":
    main()
