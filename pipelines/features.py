"""Stage features: the feature report, a linear probe on every extractor's features.

For every family in zoo.families whose model encodes (``Encoder``: sparse
coding, PSD, the autoencoders, RBM, DBM, Helmholtz, VAE and IWAE's mean
code, ...), and beside them the raw inputs, PCA at each of those code sizes
(and at features.pca) and, with features.flagship, the flagship's RBM stack
(dbn: its top layer's E[h | v], layer by layer) and fine-tuned deep
autoencoder: the items' features are computed with the model frozen, a
logistic-regression probe is fitted on the training split, its L2 strength
chosen on the validation split, and its accuracy on the test split reported
(components/evaluation/probe.py).

Writes reports/zoo/features.json (one row per extractor, best first:
``family``, ``features`` (their number), ``probe_accuracy`` (test),
``valid_accuracy``, ``c``, ``converged``, ``encode_seconds`` (all three
splits), ``probe_seconds``, plus ``dataset``, ``inputs`` and
``train_items``), the same as a Markdown table (reports/zoo/features.md) and
a CSV for DVC's bar plot (reports/zoo/features.csv).

Each family sees the items as it was trained on them (binarized by the zoo's
protocol, or as stored); pixels, PCA and the flagship's models see the
intensities. Encoding time is wall time on this machine, for comparison
between rows of one run (PSD's one pass against sparse coding's Lasso).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

from components import tracking
from components.config import FeaturesParams, as_dict, load_params
from components.data import item_shape, read_card, read_split
from components.data.binarize import family_inputs, split_inputs
from components.errors import DulError
from components.evaluation.probe import linear_probe
from components.io import write_csv, write_json, write_text
from components.models import registry
from components.models.base import Encoder
from components.models.stack import layer_from_state
from pipelines._stage import entry, run

DATA = Path("data/prepared")
ZOO_MODELS = Path("models/zoo")
STACK = Path("models/stack.pt")
AUTOENCODER = Path("models/autoencoder.pt")
REPORTS = Path("reports/zoo")
SPLITS = ("train", "validation", "test")
ENCODE_BATCH = 1000

Features = Callable[[str], np.ndarray]  # split name -> (N, F) features


def work(params: FeaturesParams) -> None:
    zoo = load_params("zoo")
    card = read_card(DATA)
    splits = {split: read_split(DATA, split) for split in SPLITS}
    raw, labels = ({split: splits[split][i] for split in SPLITS} for i in (0, 1))
    if (labels["train"] < 0).all():
        raise DulError(f"{card['dataset']} has no labels, so there is nothing for a linear probe to predict; "
                       "run the other stages by name (dvc repro index zoo) or use a labelled dataset")
    items = params.train_items or len(labels["train"])
    labels["train"] = labels["train"][:items]
    config = {**as_dict(params), "zoo.families": list(zoo.families), "zoo.variants": dict(zoo.variants),
              "zoo.binarization": zoo.binarization, "zoo.binarization_seed": zoo.binarization_seed}
    with tracking.stage_run("features", config, deps=[DATA, ZOO_MODELS]) as mlrun:
        rows = []
        for name, features in extractors(params, zoo, card, raw, items):
            start = time.perf_counter()
            split_features = {split: features(split) for split in SPLITS}
            encode_seconds = time.perf_counter() - start
            split_features["train"] = split_features["train"][:items]
            result = linear_probe(*((split_features[s], labels[s]) for s in SPLITS), params.probe_c, params.max_iter)
            row = {"family": name, "features": int(split_features["test"].shape[1]), **result,
                   "encode_seconds": round(encode_seconds, 1), "dataset": card["dataset"], "train_items": items}
            print(f"features: {name} ({row['features']} features): test accuracy {row['probe_accuracy']:.4f} "
                  f"(validation {row['valid_accuracy']:.4f}, C = {row['c']:g})", flush=True)
            rows.append(row)
        rows.sort(key=lambda r: -r["probe_accuracy"])
        write_json(REPORTS / "features.json", rows)
        write_csv(REPORTS / "features.csv", [{"family": r["family"], "probe_accuracy": r["probe_accuracy"]}
                                             for r in rows])
        write_text(REPORTS / "features.md", markdown_table(rows, params, zoo))
        mlrun.log_metrics({f"{r['family']}_probe_accuracy": r["probe_accuracy"] for r in rows})
        for name in ("features.json", "features.md"):
            mlrun.log_artifact(REPORTS / name, "zoo")


def extractors(params: FeaturesParams, zoo, card: dict, raw: dict[str, np.ndarray],
               items: int) -> list[tuple[str, Features]]:
    """(row name, features of a split) for the raw inputs (``raw``: split -> intensities or
    counts), every encoding zoo family, the flagship's models (features.flagship) and PCA
    at every size they use."""
    found: list[tuple[str, Features]] = [("pixels" if len(item_shape(card, DATA)) == 3 else "counts",
                                          raw.__getitem__)]
    sizes = set(params.pca)
    for family in zoo.names:
        model = registry.load(ZOO_MODELS / f"{family}.pt")
        if isinstance(model, Encoder):
            sizes.add(model.code_size)
            found.append((family, _encoded(model, lambda split, m=model: split_inputs(DATA, split,
                                                                                       family_inputs(m), zoo))))
    if params.flagship:
        stack = [layer_from_state(state) for state in registry.read_checkpoint(STACK)["layers"]]
        found.append(("dbn", lambda split: _up_pass(stack, raw[split])))
        autoencoder = registry.load(AUTOENCODER)
        sizes.add(autoencoder.code_size)
        found.append(("deep-autoencoder", _encoded(autoencoder, raw.__getitem__)))
    for size in sorted(sizes):
        if size < raw["train"].shape[1]:
            found.append((f"pca-{size}", _pca(raw, size, items)))
    return found


def _encoded(model, inputs: Callable[[str], np.ndarray]) -> Features:
    model.eval()

    def features(split: str) -> np.ndarray:
        X = torch.from_numpy(np.ascontiguousarray(inputs(split), dtype=np.float32))
        with torch.no_grad():
            return torch.cat([model.encode(x) for x in X.split(ENCODE_BATCH)]).float().numpy()

    return features


def _up_pass(layers, X: np.ndarray) -> np.ndarray:
    """The stack's top-layer E[h | v], each layer on the means of the one below."""
    h = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    with torch.no_grad():
        for layer in layers:
            h = torch.cat([layer.h_mean(x) for x in h.split(ENCODE_BATCH)])
    return h.numpy()


def _pca(raw: dict[str, np.ndarray], size: int, items: int) -> Features:
    """PCA fitted on the training items the probe sees (a fixed solver seed)."""
    pca = PCA(n_components=size, random_state=0).fit(raw["train"][:items])
    return lambda split: pca.transform(raw[split]).astype(np.float32)


def markdown_table(rows: list[dict], params: FeaturesParams, zoo) -> str:
    lines = [f"Linear-probe test accuracy (logistic regression on frozen features, fitted on {rows[0]['train_items']:,} "
             f"training items, C in {list(params.probe_c)} chosen on validation); zoo families see their inputs "
             f"binarized by the zoo's protocol ({zoo.binarization}, seed {zoo.binarization_seed}) where they model "
             "binary images." if rows else "No extractors.", "",
             "| features | size | test accuracy | validation accuracy | C | encode s |", "|---|---|---|---|---|---|"]
    for r in rows:
        converged = "" if r["converged"] else " (not converged)"
        lines.append(f"| {r['family']} | {r['features']:,} | {r['probe_accuracy']:.4f} | {r['valid_accuracy']:.4f} | "
                     f"{r['c']:g}{converged} | {r['encode_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


main = entry("features", __doc__, work)

if __name__ == "__main__":
    run(main)
