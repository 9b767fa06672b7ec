"""Stage evaluate: test reconstruction error of the deep autoencoder next to PCA.

The paper's metric (Hinton & Salakhutdinov 2006): squared error summed over
the pixels of a test image, averaged over test images; PCA uses as many
components as the autoencoder's code has units, fitted on the training split.
Writes reports/evaluate/metrics.json (DVC metrics), reconstructions.png (test
images, autoencoder and PCA reconstructions), learning_curves.png and
filters.png (the first RBM's weights into its hidden units).
"""

from pathlib import Path

import numpy as np
import torch

from components import tracking
from components.config import EvaluateParams, as_dict
from components.data import read_card, read_split
from components.evaluation import (autoencoder_reconstruct, filters_figure, learning_curves_figure,
                                   pca_reconstruct, reconstruction_figure, squared_error)
from components.io import read_csv, write_json
from components.models import DeepAutoencoder
from pipelines._stage import entry, run

DATA = Path("data/prepared")
MODEL = Path("models/autoencoder.pt")
STACK = Path("models/stack.pt")
CURVES = {"pretrain": Path("reports/pretrain/curve.csv"), "finetune": Path("reports/finetune/curve.csv")}
REPORTS = Path("reports/evaluate")


def work(params: EvaluateParams) -> None:
    with tracking.stage_run("evaluate", as_dict(params), deps=[DATA, MODEL, STACK]) as mlrun:
        model = DeepAutoencoder.from_checkpoint(torch.load(MODEL, weights_only=True))
        X_train, _ = read_split(DATA, "train")
        X_test, y_test = read_split(DATA, "test")
        recon = {"autoencoder": autoencoder_reconstruct(model, X_test),
                 "pca": pca_reconstruct(X_train, X_test, model.code_size)}
        errors = {name: squared_error(X_test, r) for name, r in recon.items()}
        metrics = {"test_squared_error_autoencoder": errors["autoencoder"], "test_squared_error_pca": errors["pca"],
                   "code_size": model.code_size, "n_test": len(X_test)}
        write_json(REPORTS / "metrics.json", metrics)
        shown = _one_per_label(y_test, params.n_images)
        names = {"autoencoder": f"autoencoder ({model.code_size} codes)", "pca": f"PCA-{model.code_size}"}
        rows = {"test images": X_test[shown], **{names[k]: r[shown] for k, r in recon.items()}}
        labelled = {names[k]: e for k, e in errors.items()}
        reconstruction_figure(REPORTS / "reconstructions.png", rows, tuple(read_card(DATA)["image_shape"]), labelled)
        learning_curves_figure(REPORTS / "learning_curves.png", read_csv(CURVES["pretrain"]), read_csv(CURVES["finetune"]))
        first = torch.load(STACK, weights_only=True)["layers"][0]["W"].numpy()  # (D, H)
        filters_figure(REPORTS / "filters.png", first, tuple(read_card(DATA)["image_shape"]))
        mlrun.log_metrics(metrics)
        for name in ("metrics.json", "reconstructions.png", "learning_curves.png", "filters.png"):
            mlrun.log_artifact(REPORTS / name, "evaluate")
    print(f"evaluate: test squared error per image: autoencoder {errors['autoencoder']:.3f}, "
          f"PCA-{model.code_size} {errors['pca']:.3f} (n={len(X_test)})")


def _one_per_label(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of n test items, the first of each label first (a varied picture)."""
    firsts = [int(np.flatnonzero(labels == label)[0]) for label in np.unique(labels)]
    taken = set(firsts)
    rest = [i for i in range(len(labels)) if i not in taken]
    return np.array((firsts + rest)[:n])


main = entry("evaluate", __doc__, work)

if __name__ == "__main__":
    run(main)
