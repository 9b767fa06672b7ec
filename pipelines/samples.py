"""Stage samples: the sample report, every image sampler of the zoo scored on one scale.

For every zoo row (zoo.families and zoo.variants) whose model samples grey
images (``Sampler``), ``samples.n`` samples are drawn with ``samples.seed``;
samples that are probabilities rather than bits (a VAE's means) are drawn
from once more with the same seed, so that every family is scored on binary
images, as the zoo's data is. They are compared with the first ``n`` test
items (binarized by the zoo's protocol) in the features of the scorer
(models/scorer.pt, stage scorer): Fréchet distance, kernel distance (KID,
with its spread over subsets), precision and recall, density and coverage
(Naeem et al. 2020), and, for older papers'
sake only, a Parzen-window log-likelihood in pixel space (sigma chosen on
validation items; unreliable, Theis et al. 2016: components/evaluation/sample_scores.py).

Two sanity rows frame the table: ``real-data``, n items of the training
half the scorer did not learn from (real images it has not seen, as the
test items: about the best a model can do), and ``mean-image``, n draws of
independent pixels at the training mean (a floor). A family far below
real-data or above mean-image on Fréchet and KID points at the score, not
the family. Precision alone is fooled by such averages: blurry or
mean-like samples fall inside the real manifold's balls (Kynkäänniemi et al.
pair it with recall for that reason), and so can density, both measures of
fidelity only. The table ends with that check, column by column: where
real-data is not the best row or mean-image not the worst, it says so.

Writes reports/zoo/samples.json (one row per sampler and the two sanity
rows, best Fréchet distance first: ``family``, ``frechet``, ``kid``,
``kid_std``, ``precision``, ``recall``, ``density``, ``coverage``, ``parzen_ll``, ``parzen_stderr``,
``parzen_sigma``, ``samples``, ``seed``), samples.md and samples.csv (for
DVC's bar plot).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from components import tracking
from components.config import SamplesParams, as_dict, load_params
from components.data import item_shape, read_card
from components.data.binarize import split_inputs
from components.evaluation.sample_scores import binary_samples, score_samples
from components.evaluation.scorer import ScorerNet, grey_image_shape, halves
from components.io import write_csv, write_json, write_text
from components.models import registry
from components.models.base import Sampler
from pipelines._stage import entry, run

DATA = Path("data/prepared")
ZOO_MODELS = Path("models/zoo")
SCORER = Path("models/scorer.pt")
REPORTS = Path("reports/zoo")
PARZEN_ITEMS = 1000  # validation items sigma is chosen on, and test items scored (the first ones)


def work(params: SamplesParams) -> None:
    zoo = load_params("zoo")
    card = read_card(DATA)
    shape = grey_image_shape(card, item_shape(card, DATA), "samples")
    checkpoint = registry.read_checkpoint(SCORER)
    scorer = ScorerNet.from_checkpoint(checkpoint)
    test = split_inputs(DATA, "test", "binary", zoo)
    n = min(params.n, len(test))
    real = test[:n]
    valid = split_inputs(DATA, "validation", "binary", zoo)[:PARZEN_ITEMS]
    real_features = scorer.embed(real)
    config = {**as_dict(params), "zoo.families": list(zoo.families), "zoo.variants": dict(zoo.variants),
              "zoo.binarization": zoo.binarization, "zoo.binarization_seed": zoo.binarization_seed}
    with tracking.stage_run("samples", config, deps=[DATA, ZOO_MODELS, SCORER]) as mlrun:
        rows = []
        for name, drawn, seconds in _samplers(zoo, params, n, shape):
            row = {"family": name, **score_samples(scorer.embed, real_features, drawn, valid, real[:PARZEN_ITEMS],
                                                    params.kid_subsets, params.seed),
                   "samples": n, "seed": params.seed, "sample_seconds": round(seconds, 1)}
            print(f"samples: {name}: Fréchet {row['frechet']:.2f}, KID {row['kid']:.4f}, precision "
                  f"{row['precision']:.3f}, recall {row['recall']:.3f}, density {row['density']:.3f}, coverage "
                  f"{row['coverage']:.3f}", flush=True)
            rows.append(row)
        rows.sort(key=lambda r: r["frechet"])
        write_json(REPORTS / "samples.json", rows)
        write_csv(REPORTS / "samples.csv", [{"family": r["family"], "frechet": r["frechet"]} for r in rows])
        write_text(REPORTS / "samples.md", markdown_table(rows, n, params, checkpoint.get("test_accuracy")))
        mlrun.log_metrics({f"{r['family']}_frechet": r["frechet"] for r in rows})
        for file in ("samples.json", "samples.md"):
            mlrun.log_artifact(REPORTS / file, "zoo")


def _samplers(zoo, params: SamplesParams, n: int, shape: tuple[int, ...]):
    """(row name, (n, D) binary samples, seconds to draw them): the sanity rows, then every zoo sampler."""
    train = split_inputs(DATA, "train", "binary", zoo)
    rng = np.random.default_rng(params.seed)
    yield "real-data", train[halves(len(train))[1]][:n], 0.0  # the half the scorer did not learn from
    mean = train.mean(0)
    yield "mean-image", (rng.random((n, mean.size)) < mean).astype(np.float32), 0.0
    for name in zoo.names:
        model = registry.load(ZOO_MODELS / f"{name}.pt")
        if not isinstance(model, Sampler):
            continue
        start = time.perf_counter()
        drawn = binary_samples(model, n, params.seed)
        yield name, drawn, time.perf_counter() - start


# column: (its name in the table, whether higher is better)
COLUMNS = {"frechet": ("Fréchet", False), "kid": ("KID", False), "precision": ("precision", True),
           "recall": ("recall", True), "density": ("density", True), "coverage": ("coverage", True)}


def sanity(rows: list[dict]) -> dict[str, dict[str, list[str]]]:
    """For each column, the families that break the frame: those scoring better than 'real-data'
    ("above real-data") and those scoring worse than 'mean-image' ("below mean-image"); ties pass."""
    by_name = {r["family"]: r for r in rows}
    families = [r for r in rows if r["family"] not in ("real-data", "mean-image")]
    failures = {}
    for column, (_, higher) in COLUMNS.items():
        sign = 1 if higher else -1
        failures[column] = {
            "above real-data": [r["family"] for r in families if "real-data" in by_name
                                and sign * r[column] > sign * by_name["real-data"][column]],
            "below mean-image": [r["family"] for r in families if "mean-image" in by_name
                                 and sign * r[column] < sign * by_name["mean-image"][column]]}
    return failures


def markdown_table(rows: list[dict], n: int, params: SamplesParams, accuracy: float | None) -> str:
    scorer = f"the scorer's features (test accuracy {accuracy:.4f})" if accuracy is not None else "the scorer's features"
    lower = " and ".join(name for name, higher in COLUMNS.values() if not higher)
    higher = ", ".join(name for name, higher in COLUMNS.values() if higher)
    lines = [(f"{n} samples per row (seed {params.seed}) against {n} binarized test items, in {scorer}. "
             f"{lower}: lower is better; {higher}: higher. real-data and mean-image are the "
             "ceiling and the floor."), "",
             "| family | Fréchet | KID (± std) | precision | recall | density | coverage | "
             "Parzen LL, nats (unreliable) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['frechet']:.2f} | {r['kid']:.4f} ± {r['kid_std']:.4f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['density']:.3f} | {r['coverage']:.3f} | "
                     f"{r['parzen_ll']:.1f} ± {r['parzen_stderr']:.1f} |")
    failures = sanity(rows)
    passing = [COLUMNS[c][0] for c, broken in failures.items() if not any(broken.values())]
    check = [f"Sanity check (real-data the best row, mean-image the worst): holds for {', '.join(passing) or 'no column'}."]
    for column, broken in failures.items():
        found = [f"{', '.join(names)} {where}" for where, names in broken.items() if names]
        if found:
            check.append(f"{COLUMNS[column][0].capitalize()} fails it: {'; '.join(found)}.")
    lines += ["", " ".join(check), "",
              ("Density and coverage (Naeem et al. 2020, k = 5) use the real items' balls only. Precision and "
               "density measure fidelity alone, so average-looking samples can score well on them; Fréchet, KID, "
               "recall and coverage also see what is missing."), "",
              ("The Parzen-window log-likelihood (sigma chosen on validation items) is shown only to set figures "
              "beside older papers': it ranks models unreliably (Theis, van den Oord & Bethge 2016).")]
    return "\n".join(lines) + "\n"


main = entry("samples", __doc__, work)

if __name__ == "__main__":
    run(main)
