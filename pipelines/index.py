"""Stage index: binary codes for every item, the retrieval index, precision@k.

Encodes train, validation and test items with the encoder at index.model
(the fine-tuned deep autoencoder by default; any family with codes, e.g. a
zoo family's models/zoo/nash.pt),
thresholds each code unit at its median over the training items (balanced
bits), and writes index/codes.npz (loadable without unpickling; searched by
`dul search --index index/codes.npz --item N`). Test items query the
training items by Hamming distance: reports/index/metrics.json holds
precision@k (the fraction of the k nearest that share the query's label) and
reports/index/precision.csv the curve over k (a DVC plot).

In the same run, up to index.max_queries test queries (a seeded sample)
rank the training items with the codes and with the baselines of the field
at the same size (TF-IDF, LSA and LSH for word counts; pixels, PCA and LSH
for images), and, for a linear code layer (the Science 2006 autoencoder),
with the real-valued codes by cosine: precision@100 of each goes into the metrics, their
precision-recall curves into reports/index/pr_curves.{csv,png}.

It also writes index/search, the folder `dul search` answers free-text and
document queries from (codes, address table, thresholds, ids, titles, the
encoder and, for word counts, the vocabulary and TF-IDF rows). Both are
written beside their targets first and moved into place together, so they
always come from the same run (a full disk replaces neither). For word
counts the same test queries then search the whole collection two ways, the
paper's comparison: a Hamming-ball shortlist (radius 2, grown to 100 items
by the nearest codes outside it; the 100 nearest codes above 32 bits)
re-ranked by TF-IDF, against TF-IDF over every item:
precision@k and the mean query time of each (``search/*`` metrics), and the
same with each query's title (its subject line) as a short free-text query
(``search/title/*``: what people type).

Registers index/search in the MLflow model registry as dul-index, a model
from raw query vectors to their k nearest items' ids and Hamming distances
(the champion alias moves to it if its precision@k is higher).

Word counts are never held as a dense (N, V) matrix: every split is encoded
in batches straight from its Parquet file, and the counts are read as the
sparse (CSR) matrices they are stored as for what needs a whole split (the
TF-IDF, LSA and LSH baselines, the search folder's TF-IDF rows); the TF-IDF
cosine ranking densifies a block of database rows at a time. Images are
small: they are read whole, as PCA needs them.
"""

from pathlib import Path

import numpy as np
import scipy.sparse

from components import tracking
from components.config import IndexParams, as_dict
from components.data import (
    SPLITS,
    item_shape,
    read_card,
    read_ids,
    read_label_sets,
    read_split,
)
from components.data.text import (
    read_bow_split,
    read_doc_ids,
    read_titles,
    read_vocabulary,
)
from components.errors import DulError
from components.evaluation import encode_split, precision_recall_figure
from components.io import atomic_paths, file_md5, write_csv, write_json
from components.models import registry
from components.models.base import Encoder
from components.retrieval import (
    binarize,
    fit_thresholds,
    knn,
    pack_bits,
    precision_at_k,
    write_index,
)
from components.retrieval.compare import baseline_vectors, compare_methods, one_thread
from components.retrieval.documents import load_search_index, write_search_index
from components.retrieval.search_eval import compare_search, compare_title_queries
from components.tracking.registry import register_index
from pipelines._stage import entry, run

DATA = Path("data/prepared")
OUT = Path("index/codes.npz")
SEARCH = Path("index/search")
REPORTS = Path("reports/index")


def work(params: IndexParams) -> None:
    card = read_card(DATA)
    model = encoder(params.model, card)
    with tracking.stage_run("index", as_dict(params), deps=[DATA, params.model]) as mlrun:
        data = {split: _read(card, split) for split in SPLITS}
        label_sets = {split: read_label_sets(DATA, split) for split in SPLITS}  # a hit shares any label
        with one_thread():  # the same codes whatever the machine's load (float32 sums by thread count)
            codes = {split: encode_split(model, DATA / f"{split}.parquet") for split in SPLITS}
        thresholds = fit_thresholds(codes["train"])
        bits = {split: binarize(c, thresholds) for split, c in codes.items()}
        queries = _queries(params, len(data["test"][1]))
        with atomic_paths(OUT, SEARCH) as (codes_out, search_out):  # both from this run, or neither replaced
            _write_codes(codes_out, card, data, bits, thresholds, params.model)
            search_metrics = _search_index(search_out, model, thresholds, card, data, bits, queries, params.k,
                                           params.model, label_sets)
        k = min(params.k, len(bits["train"]))
        neighbours, _ = knn(pack_bits(bits["test"]), pack_bits(bits["train"]), k)
        curve = precision_at_k(label_sets["test"], label_sets["train"], neighbours)
        n_bits = bits["train"].shape[1]
        metrics = {f"precision_at_{k}": float(curve[-1]), "n_bits": n_bits,
                   "n_items": int(sum(len(b) for b in bits.values()))}
        metrics |= _compare(card, data, label_sets, bits, codes if model.code_units == "linear" else None, queries,
                            getattr(model, "label", model.family))
        metrics |= search_metrics
        write_json(REPORTS / "metrics.json", metrics)
        write_csv(REPORTS / "precision.csv", [{"k": j, "precision": float(p)} for j, p in enumerate(curve, start=1)])
        mlrun.log_metrics(metrics)
        for name in ("precision.csv", "pr_curves.csv", "pr_curves.png"):
            mlrun.log_artifact(REPORTS / name, "index")
        mlrun.tag_files("outs", [OUT, SEARCH])
        registered = register_index(mlrun, SEARCH, n_inputs=item_features(card), k=k, metric=f"precision_at_{k}",
                                    value=metrics[f"precision_at_{k}"])
    print(f"index: {metrics['n_items']} items, {n_bits}-bit codes of {model.family} -> {OUT}, {SEARCH}; "
          f"precision@{k} (test vs train) {metrics[f'precision_at_{k}']:.3f}; {registered.describe()}")


def encoder(path: str, card: dict):
    """The model at ``path``, which must have codes (``Encoder``) and data with labels to score them by."""
    model = registry.load(path)
    if not isinstance(model, Encoder):
        raise DulError(f"index: {path} holds a {model.family} model, which has no codes (no encode); index.model "
                       "needs a family with codes, e.g. models/autoencoder.pt or models/zoo/nash.pt")
    if not card.get("labels", True):
        raise DulError(f"index: {card['dataset']} has no labels, so its codes' precision cannot be measured; "
                       "index a labelled dataset")
    return model.eval()


def item_features(card: dict) -> int:
    return int(np.prod(item_shape(card, DATA)))


def _read(card: dict, split: str) -> tuple:
    """(X, y) of a split: word counts as the CSR int32 (N, V) matrix they are stored as (never
    dense), images as ``read_split``'s dense float32 (N, D); labels int64 (N,)."""
    if card.get("kind") == "bow":
        counts, labels, _ = read_bow_split(DATA / f"{split}.parquet")
        return counts, labels
    return read_split(DATA, split)


def _queries(params: IndexParams, n_test: int) -> np.ndarray:
    """The test items that query (a seeded sample of index.max_queries; 0: all), ascending."""
    order = np.random.default_rng(0).permutation(n_test)
    return np.sort(order[:params.max_queries]) if params.max_queries else np.arange(n_test)


def _write_codes(path: Path, card: dict, data: dict, bits: dict, thresholds: np.ndarray, model_path: str) -> None:
    """index/codes.npz (at ``path``, a temporary): every item's code, label, split and id."""
    write_index(path, bits=np.concatenate([bits[s] for s in SPLITS]),
                labels=np.concatenate([data[s][1] for s in SPLITS]),
                splits=np.concatenate([[s] * len(data[s][1]) for s in SPLITS]),
                item_ids=np.concatenate([read_ids(DATA, s) for s in SPLITS]),
                thresholds=thresholds,
                meta={"dataset": card["dataset"], "model_md5": file_md5(model_path), "label_names": card.get("label_names")})


def _search_index(folder: Path, model, thresholds, card: dict, data: dict, bits: dict, queries: np.ndarray,
                  k: int, model_path: str, label_sets: dict) -> dict:
    """Write index/search (at ``folder``, a temporary) over all items; for word counts, the
    search metrics of the test queries."""
    labels = {split: data[split][1] for split in SPLITS}
    if card.get("kind") == "bow":
        ids = [i for split in SPLITS for i in read_doc_ids(DATA / f"{split}.parquet")]
        titles = [t for split in SPLITS for t in read_titles(DATA / f"{split}.parquet")]
        text = {"counts": scipy.sparse.vstack([data[s][0] for s in SPLITS]).tocsr(),
                "vocabulary": read_vocabulary(DATA / "train.parquet")}
    else:
        ids = [f"{split}/{i}" for split in SPLITS for i in read_ids(DATA, split)]
        titles, text = [""] * len(ids), {}
    write_search_index(folder, model=model, thresholds=thresholds,
                       bits=np.concatenate([bits[s] for s in SPLITS]), ids=ids, titles=titles,
                       labels=np.concatenate([labels[s] for s in SPLITS]),
                       splits=np.concatenate([[s] * len(labels[s]) for s in SPLITS]),
                       meta={"dataset": card["dataset"], "kind": card.get("kind", "images"),
                             "label_names": card.get("label_names"), "model_md5": file_md5(model_path)}, **text)
    if not text:
        return {}
    offset = len(labels["train"]) + len(labels["validation"])
    index, every = load_search_index(folder), np.concatenate([label_sets[s] for s in SPLITS])
    return (compare_search(index, offset + queries, k, shortlist=100, label_sets=every)
            | compare_title_queries(index, offset + queries, k, shortlist=100, label_sets=every))


def _compare(card: dict, data: dict, label_sets: dict, bits: dict, codes: dict | None, queries: np.ndarray,
             label: str) -> dict:
    """The codes and the baselines on the same queries: precision@100 each, PR curves to reports/.

    ``codes``: the real-valued codes of a linear code layer (the Science 2006
    autoencoder's), also ranked by cosine next to LSA/PCA at the same size."""
    X_train, y_train = data["train"]
    X_test = data["test"][0]
    n_bits = bits["train"].shape[1]
    methods = {f"{label}, {n_bits} bits": (pack_bits(bits["train"]), pack_bits(bits["test"][queries]), "hamming")}
    if codes is not None:
        methods[f"{label} real-valued codes, {n_bits}-d (cosine)"] = (codes["train"], codes["test"][queries], "cosine")
    methods |= baseline_vectors(card.get("kind", "images"), X_train, X_test[queries], n_bits)
    curves = compare_methods(methods, label_sets["test"][queries], label_sets["train"])
    rows = [{"method": name, "cutoff": int(c), "precision": float(p), "recall": float(r)}
            for name, curve in curves.items() for c, p, r in zip(curve["cutoff"], curve["precision"], curve["recall"])]
    write_csv(REPORTS / "pr_curves.csv", rows)
    precision_recall_figure(REPORTS / "pr_curves.png", curves, f"{card['dataset']}: {len(queries)} test queries "
                            f"against {len(y_train)} training items (relevant: a shared label)")
    at = min(100, len(y_train))
    return {f"precision_at_{at}/{_slug(name)}": float(curve["precision"][list(curve["cutoff"]).index(at)])
            for name, curve in curves.items()} | {"n_queries": len(queries)}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.split(",")[0].split(" (")[0].lower()).strip("_")


main = entry("index", __doc__, work)

if __name__ == "__main__":
    run(main)
