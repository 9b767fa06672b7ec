"""Stage index: binary codes for every item, the retrieval index, precision@k.

Encodes train, validation and test items with the fine-tuned encoder,
thresholds each code unit at its median over the training items (balanced
bits), and writes index/codes.npz (loadable without unpickling; searched by
`dul search --index index/codes.npz --item N`). Test items query the
training items by Hamming distance: reports/index/metrics.json holds
precision@k (the fraction of the k nearest that share the query's label) and
reports/index/precision.csv the curve over k (a DVC plot).
"""

from pathlib import Path

import numpy as np
import torch

from components import tracking
from components.config import IndexParams, as_dict
from components.data import SPLITS, read_card, read_ids, read_split
from components.evaluation import encode
from components.io import file_md5, write_csv, write_json
from components.models import DeepAutoencoder
from components.retrieval import binarize, fit_thresholds, knn, pack_bits, precision_at_k, write_index
from pipelines._stage import entry, run

DATA = Path("data/prepared")
MODEL = Path("models/autoencoder.pt")
OUT = Path("index/codes.npz")
REPORTS = Path("reports/index")


def work(params: IndexParams) -> None:
    with tracking.stage_run("index", as_dict(params), deps=[DATA, MODEL]) as mlrun:
        model = DeepAutoencoder.from_checkpoint(torch.load(MODEL, weights_only=True))
        data = {split: read_split(DATA, split) for split in SPLITS}
        codes = {split: encode(model, X) for split, (X, _) in data.items()}
        thresholds = fit_thresholds(codes["train"])
        bits = {split: binarize(c, thresholds) for split, c in codes.items()}
        card = read_card(DATA)
        write_index(OUT, bits=np.concatenate([bits[s] for s in SPLITS]),
                    labels=np.concatenate([data[s][1] for s in SPLITS]),
                    splits=np.concatenate([[s] * len(data[s][1]) for s in SPLITS]),
                    item_ids=np.concatenate([read_ids(DATA, s) for s in SPLITS]),
                    thresholds=thresholds,
                    meta={"dataset": card["dataset"], "model_md5": file_md5(MODEL),
                          "label_names": card.get("label_names")})
        k = min(params.k, len(bits["train"]))
        neighbours, _ = knn(pack_bits(bits["test"]), pack_bits(bits["train"]), k)
        curve = precision_at_k(data["test"][1], data["train"][1], neighbours)
        metrics = {f"precision_at_{k}": float(curve[-1]), "n_bits": model.code_size,
                   "n_items": int(sum(len(b) for b in bits.values()))}
        write_json(REPORTS / "metrics.json", metrics)
        write_csv(REPORTS / "precision.csv", [{"k": j, "precision": float(p)} for j, p in enumerate(curve, start=1)])
        mlrun.log_metrics(metrics)
        mlrun.log_artifact(REPORTS / "precision.csv", "index")
        mlrun.tag_files("outs", [OUT])
    print(f"index: {metrics['n_items']} items, {model.code_size}-bit codes -> {OUT}; "
          f"precision@{k} (test vs train) {metrics[f'precision_at_{k}']:.3f}")


main = entry("index", __doc__, work)

if __name__ == "__main__":
    run(main)
