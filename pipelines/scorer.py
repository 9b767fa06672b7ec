"""Stage scorer: the classifier the sample report scores samples with.

Trains components/evaluation/scorer.py's small CNN on the first half of
data/prepared's training split as the zoo's families see it (binarized by
the zoo's protocol, zoo.binarization; the other half is held back for the
sample report's real-data row), keeps the epoch with the best validation
accuracy, and states its test accuracy: a feature space is only as good as
the classifier it comes from. Writes models/scorer.pt (its weights, versioned
by DVC) and reports/scorer/{metrics.json,curve.csv}. It trains in seconds to
minutes in-process, so a killed run trains it again from the start rather
than resuming it (the zoo's families resume through the loop).
"""

from __future__ import annotations

import time
from pathlib import Path

from components import tracking
from components.config import ScorerParams, as_dict, load_params
from components.data import item_shape, read_card, read_split
from components.data.binarize import split_inputs
from components.errors import DulError
from components.evaluation.scorer import grey_image_shape, halves, train_scorer
from components.io import save_torch, write_csv, write_json
from pipelines._stage import entry, run

DATA = Path("data/prepared")
OUT = Path("models/scorer.pt")
REPORTS = Path("reports/scorer")
SPLITS = ("train", "validation", "test")


def work(params: ScorerParams) -> None:
    zoo = load_params("zoo")
    card = read_card(DATA)
    shape = grey_image_shape(card, item_shape(card, DATA), "scorer")
    if not card.get("labels", True):
        raise DulError(f"scorer: {card['dataset']} has no labels to train the scoring classifier on; use a labelled "
                       "dataset")
    data = {split: (split_inputs(DATA, split, "binary", zoo), read_split(DATA, split)[1]) for split in SPLITS}
    learn, _ = halves(len(data["train"][1]))  # the other half is the sample report's real-data row
    data["train"] = (data["train"][0][learn], data["train"][1][learn])
    with tracking.stage_run("scorer", {**as_dict(params), "zoo.binarization": zoo.binarization,
                                       "zoo.binarization_seed": zoo.binarization_seed}, deps=[DATA]) as mlrun:
        start = time.perf_counter()
        net, history = train_scorer(data["train"], data["validation"], shape[1:], epochs=params.epochs,
                                    batch_size=params.batch_size, lr=params.lr, seed=params.seed,
                                    on_epoch=lambda row: print(f"scorer: epoch {row['epoch']} of {params.epochs}, "
                                                               f"validation accuracy {row['valid_accuracy']:.4f}",
                                                               flush=True))
        kept = max(history, key=lambda row: row["valid_accuracy"])
        metrics = {"test_accuracy": net.accuracy(*data["test"]), "valid_accuracy": kept["valid_accuracy"],
                   "epoch_kept": kept["epoch"], "features": 128, "dataset": card["dataset"],
                   "inputs": f"binarized ({zoo.binarization}, seed {zoo.binarization_seed})",
                   "train_seconds": round(time.perf_counter() - start, 1)}
        save_torch(OUT, net.to_checkpoint() | {"test_accuracy": metrics["test_accuracy"]})
        write_json(REPORTS / "metrics.json", metrics)
        write_csv(REPORTS / "curve.csv", history)
        mlrun.log_history(history, prefix="scorer_")
        mlrun.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        mlrun.log_artifact(OUT, "model")
        mlrun.tag_files("outs", [OUT])
    print(f"scorer: test accuracy {metrics['test_accuracy']:.4f} (epoch {kept['epoch']} of {params.epochs}, "
          f"kept on validation) -> {OUT}")


main = entry("scorer", __doc__, work)

if __name__ == "__main__":
    run(main)
