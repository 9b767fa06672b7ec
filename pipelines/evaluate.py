"""Stage evaluate: how well the fine-tuned deep autoencoder models the test set.

Images: the paper's metric (Hinton & Salakhutdinov 2006), squared error
summed over the pixels of a test image, averaged over test images, next to
PCA with as many components as the code has units (fitted on the training
split). Both are in the data's units (pixel intensities in [0, 1]): a model
with Gaussian inputs reconstructs in standardised units and is mapped back
with the training split's mean and std first; its error in standardised
units, what fine-tuning fitted, is reported as well
(``test_squared_error_autoencoder_standardised``). Figures of
reconstructions, the first RBM's filters and samples from the DBN
(ancestral sampling after 1,000 Gibbs steps in the top RBM; Bernoulli
stacks only).
Documents (word counts): the test perplexity of the reconstructions next to
the unigram model's, and the same three figures as tables of words (each
hidden unit's top words, the documents' and their reconstructions' top words,
the top words of the DBN's sampled rates). Both: a 2-D map of the test codes next to 2-D PCA of
the data (the paper's Figs. 3 and 4) and the learning curves. Writes
reports/evaluate/metrics.json (DVC metrics) and the figures beside it.

Word counts are never held as a dense (N, V) matrix: the splits are read as
the sparse counts they are stored as, the codes are encoded in batches
straight from the test split's file, and the perplexities and the data's
PCA map are computed a block of rows at a time (the same figures, bit for
bit). Images are small and PCA needs them dense: they are read whole.
"""

from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from components import tracking
from components.config import EvaluateParams, as_dict
from components.data import read_card, read_split
from components.data.text import read_bow_split, read_vocabulary
from components.evaluation import (autoencoder_reconstruct, encode_split, filters_figure, learning_curves_figure,
                                   pca_reconstruct, reconstruction_figure, squared_error)
from components.evaluation.ais import ais_log_partition, log_likelihood, pseudo_log_likelihood
from components.evaluation.documents import autoencoder_perplexity, counts_map, mean_length, unigram_perplexity
from components.evaluation.maps import maps_figure, project_2d
from components.evaluation.samples import samples_figure
from components.evaluation.words import top_words, word_table_figure
from components.io import read_csv, write_json
from components.errors import DulError
from components.models import registry
from components.models.base import Encoder, Reconstructor
from components.models.dbn import DeepBeliefNet
from components.models.stack import layer_from_state
from pipelines._stage import entry, run

DATA = Path("data/prepared")
MODEL = Path("models/autoencoder.pt")
STACK = Path("models/stack.pt")
CURVES = {"pretrain": Path("reports/pretrain/curve.csv"), "finetune": Path("reports/finetune/curve.csv")}
REPORTS = Path("reports/evaluate")
SAMPLES, GIBBS_STEPS = 30, 1000


def work(params: EvaluateParams) -> None:
    card = read_card(DATA)
    with tracking.stage_run("evaluate", as_dict(params), deps=[DATA, MODEL, STACK]) as mlrun:
        model = registry.load(MODEL)
        if not isinstance(model, Reconstructor) or not isinstance(model, Encoder):
            raise DulError(f"evaluate: {MODEL} holds a {model.family} model; evaluate measures an autoencoder's "
                           "reconstructions and codes (zoo families are measured by their train@ stages)")
        stack = registry.read_checkpoint(STACK)
        if card.get("kind") == "bow":  # sparse counts (N, V)
            X_train, _, _ = read_bow_split(DATA / "train.parquet")
            X_test, y_test, _ = read_bow_split(DATA / "test.parquet")
            metrics, figures = _documents(model, stack, X_train, X_test, read_vocabulary(DATA / "train.parquet"), params)
            data_map = counts_map(X_test)
        else:
            X_train, _ = read_split(DATA, "train")
            X_test, y_test = read_split(DATA, "test")
            metrics, figures = _images(model, stack, X_train, X_test, y_test, card, params)
            data_map = project_2d(X_test)
        del X_train, X_test
        metrics |= {"code_size": model.code_size, "n_test": len(y_test)}
        write_json(REPORTS / "metrics.json", metrics)
        maps = {f"autoencoder codes ({model.code_size} units{', PCA to 2-D' if model.code_size > 2 else ''})":
                project_2d(encode_split(model, DATA / "test.parquet")), "PCA of the data (2 components)": data_map}
        maps_figure(REPORTS / "codes_2d.png", maps, y_test, card.get("label_names"))
        learning_curves_figure(REPORTS / "learning_curves.png", read_csv(CURVES["pretrain"]), read_csv(CURVES["finetune"]))
        mlrun.log_metrics(metrics)
        for name in ["metrics.json", "codes_2d.png", "learning_curves.png", *figures]:
            mlrun.log_artifact(REPORTS / name, "evaluate")
    print("evaluate: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))


def _documents(model, stack, X_train, X_test, vocabulary, params) -> tuple[dict, list[str]]:
    """The figures of counts X_train, X_test (N, V), dense or sparse: densified only a batch at a time."""
    shown = X_test[:min(params.n_images, X_test.shape[0])]
    shown = shown.toarray().astype(np.float32) if scipy.sparse.issparse(shown) else shown  # (n, V)
    recon = autoencoder_reconstruct(model, shown)
    word_table_figure(REPORTS / "reconstructions.png", {"test document's top words": top_words(shown, vocabulary),
                      "its reconstruction's top words": top_words(recon, vocabulary)},
                      "Test documents and their reconstructions (most frequent / most expected words)")
    W = stack["layers"][0]["W"].numpy()  # (V, H)
    word_table_figure(REPORTS / "filters.png", {"first 30 hidden units: words of largest weight":
                      top_words(W.T[:30], vocabulary)}, "First-layer filters as words")
    word_table_figure(REPORTS / "samples.png", {"DBN samples: most likely words": _document_samples(stack, X_train,
                      vocabulary)}, f"Documents sampled from the DBN ({GIBBS_STEPS} Gibbs steps in the top RBM)")
    metrics = {"test_perplexity_autoencoder": autoencoder_perplexity(model, X_test),
               "test_perplexity_unigram": unigram_perplexity(X_train, X_test)}
    return metrics, ["reconstructions.png", "filters.png", "samples.png"]


def _document_samples(stack, X_train, vocabulary) -> list[str]:
    """Top words of the rates the DBN gives sampled first-layer states (documents of mean length)."""
    layers = [layer_from_state(state) for state in stack["layers"]]
    if len(layers) < 2 or any(state.get("kind", "rbm") != "rbm" for state in stack["layers"]):
        return ["(no samples: the stack is not a DBN of two or more RBMs)"]
    generator = torch.Generator().manual_seed(0)
    hidden = DeepBeliefNet(layers[1:]).sample(SAMPLES, GIBBS_STEPS, generator)  # (n, H1) means
    states = (torch.rand(hidden.shape, generator=generator) < hidden).float()
    length = torch.full((SAMPLES, 1), mean_length(X_train))
    with torch.no_grad():
        rates = layers[0].v_mean(states, length)
    return top_words(rates.numpy(), vocabulary)


def _images(model, stack, X_train, X_test, y_test, card, params) -> tuple[dict, list[str]]:
    recon = {"autoencoder": autoencoder_reconstruct(model, X_test),
             "pca": pca_reconstruct(X_train, X_test, model.code_size)}
    errors = {name: squared_error(X_test, r) for name, r in recon.items()}
    shape = tuple(card["image_shape"])
    shown = _one_per_label(y_test, params.n_images)
    names = {"autoencoder": f"autoencoder ({model.code_size} codes)", "pca": f"PCA-{model.code_size}"}
    rows = {"test images": X_test[shown], **{names[k]: r[shown] for k, r in recon.items()}}
    reconstruction_figure(REPORTS / "reconstructions.png", rows, shape, {names[k]: e for k, e in errors.items()})
    filters_figure(REPORTS / "filters.png", stack["layers"][0]["W"].numpy(), shape)
    layers = [layer_from_state(state) for state in stack["layers"]]
    bernoulli_dbn = all(state.get("kind", "rbm") == "rbm" and state.get("visible_type", "bernoulli") == "bernoulli"
                        for state in stack["layers"])
    if bernoulli_dbn and len(shape) == 2:  # grey-level images
        samples = DeepBeliefNet(layers).sample(SAMPLES, GIBBS_STEPS, torch.Generator().manual_seed(0))
        samples_figure(samples, shape, REPORTS / "samples.png",
                       title=f"DBN samples ({GIBBS_STEPS} Gibbs steps in the top RBM, then a down pass)")
    else:
        reason = "the stack is not a DBN of Bernoulli RBMs" if not bernoulli_dbn else "colour images"
        word_table_figure(REPORTS / "samples.png", {"": [f"no DBN samples drawn: {reason}"]}, "DBN samples")
    figures = ["reconstructions.png", "filters.png", "samples.png"]
    metrics = {"test_squared_error_autoencoder": errors["autoencoder"], "test_squared_error_pca": errors["pca"]}
    if model.standardise is not None:  # gaussian inputs: also in the units fine-tuning fitted
        std = model.standardise.std.numpy()
        metrics["test_squared_error_autoencoder_standardised"] = squared_error(X_test / std, recon["autoencoder"] / std)
    first = stack["layers"][0]
    if params.ais_chains and first.get("kind", "rbm") == "rbm" and first["hidden_type"] == "binary" \
            and first.get("visible_type", "bernoulli") == "bernoulli":
        metrics |= _ais(layers[0], X_train, X_test, params.ais_chains)
    return metrics, figures


def _ais(rbm, X_train: np.ndarray, X_test: np.ndarray, chains: int) -> dict:
    """The first RBM as a density model of binarised images (Salakhutdinov & Murray 2008)."""
    train, test = (torch.from_numpy(X > 0.5).float() for X in (X_train, X_test))
    log_z, lower, upper = ais_log_partition(rbm, train, n_chains=chains)
    lower = lower if np.isfinite(lower) else None  # -inf: the weights' spread is too large for a bar
    return {"rbm1_ais_log_z": log_z, "rbm1_ais_log_z_lower": lower, "rbm1_ais_log_z_upper": upper,
            "rbm1_test_log_likelihood": log_likelihood(rbm, test, log_z),
            "rbm1_test_pseudo_log_likelihood": pseudo_log_likelihood(rbm, test)}


def _one_per_label(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of n test items, the first of each label first (a varied picture)."""
    firsts = [int(np.flatnonzero(labels == label)[0]) for label in np.unique(labels)]
    taken = set(firsts)
    rest = [i for i in range(len(labels)) if i not in taken]
    return np.array((firsts + rest)[:n])


main = entry("evaluate", __doc__, work)

if __name__ == "__main__":
    run(main)
