"""Stage train@<family>: train one zoo family and measure it (DVC runs one per
entry of zoo.families, and variant@<name> per entry of zoo.variants: a family
under its own section, e.g. helmholtz-rws, whose files and rows take its name).

Reads data/prepared and the family's own params section (params.yaml
``<family>:``) plus the zoo's protocol (``zoo``: binarization, test
estimator, Ray settings); trains the family through the one training loop
as a Ray Train job (components/training/family.py); writes
models/zoo/<family>.pt (``{"family", "params", "state_dict"}``, loadable by
``components.models.registry.load``) and, in reports/zoo/families/<family>/,
curve.csv (per epoch: training figures, validation NLL), metrics.json (the
family's row of the likelihood report: test NLL in nats with its standard
error, bits per dimension, the estimator, parameters, training seconds; a
sequence family: bits per character of the test stream) and samples.png (a
grid of samples, lines of sampled text, or a note that the family does not sample).

    python -m pipelines.train vae [--params params.yaml]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from components import tracking
from components.config import (
    PARAMS_FILE,
    ZooParams,
    as_dict,
    load_family_params,
    load_params,
)
from components.data import item_shape, read_card
from components.data.chars import END, read_stream
from components.errors import DulError
from components.evaluation import filters_figure
from components.evaluation.codes import codes_figure
from components.evaluation.samples import samples_figure
from components.evaluation.words import word_table_figure
from components.io import content_key, save_torch, write_csv, write_json
from components.models import registry
from components.models.base import Density, Encoder, Filters, PartitionEstimate, Sampler
from components.training.family import (
    family_inputs,
    parameter_count,
    split_inputs,
    test_figures,
    train_family,
)
from components.training.sequences import stream_figures

DATA = Path("data/prepared")
MODELS = Path("models/zoo")
REPORTS = Path("reports/zoo/families")
FILTERS_SHOWN = 100  # filters drawn per family
TEXT_SAMPLES, TEXT_LINE, TEXT_LINES = 4, 80, 4  # a sequence family's samples: 4 of 4 lines of 80 bytes
ENCODE_BATCH = 500  # test items encoded at once for the codes' figure


def work(name: str, params, zoo: ZooParams) -> dict:
    """Train zoo row ``name`` (a family, or a variant of one) with ``params`` and measure it."""
    card = read_card(DATA)
    shape = item_shape(card, DATA)
    family = zoo.family_of(name)
    stage = f"variant@{name}" if name in zoo.variants else f"train@{name}"
    with tracking.stage_run(stage, {**as_dict(params), **{f"zoo.{k}": v for k, v in as_dict(zoo).items()}},
                            deps=[DATA]) as mlrun:
        start = time.perf_counter()
        result = train_family(family, DATA, shape, params, zoo, key=content_key(family, as_dict(params),
                                                                                _protocol(zoo), card), name=name)
        seconds = time.perf_counter() - start
        out = MODELS / f"{name}.pt"
        save_torch(out, result["checkpoint"])
        model = registry.load(result["checkpoint"])
        metrics = _measure(model, name, shape, zoo, card) | {"train_seconds": round(seconds, 1)}
        if name != family:
            metrics["variant_of"] = family
        folder = REPORTS / name
        write_csv(folder / "curve.csv", result["history"])
        write_json(folder / "metrics.json", metrics)
        mlrun.log_history(result["history"], prefix=f"{name}_")
        mlrun.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        mlrun.log_artifact(out, "model")
        for file in ("metrics.json", "curve.csv", "samples.png", "filters.png", "codes.png"):
            mlrun.log_artifact(folder / file, "zoo")
        mlrun.tag_files("outs", [out])
    shown = f"test NLL {metrics['nll_nats']:.2f} nats ({metrics['estimator']})" if "nll_nats" in metrics else "trained"
    print(f"{stage}: {metrics['parameters']} parameters -> {out}; {shown}")
    return metrics


def _protocol(zoo: ZooParams) -> dict:
    """What of the zoo's settings changes a family's training (not how it is measured)."""
    return {"binarization": zoo.binarization, "binarization_seed": zoo.binarization_seed}


def _measure(model, name: str, shape: tuple[int, ...], zoo: ZooParams, card: dict) -> dict:
    metrics = {"family": name, "parameters": parameter_count(model), "dataset": card["dataset"],
               "binarization": zoo.binarization if family_inputs(model) == "binary" else f"none ({family_inputs(model)})"}
    if family_inputs(model) == "sequence":  # bits per character of the test stream; its samples as text
        stream = torch.from_numpy(read_stream(DATA, "test"))
        print(f"{name}: test bits per character, exact", flush=True)
        metrics |= stream_figures(model, stream[:zoo.test_items] if zoo.test_items else stream)
        return metrics | text_pictures(model, name, zoo)
    X = split_inputs(DATA, "test", family_inputs(model), zoo)
    X = X[:zoo.test_items] if zoo.test_items else X
    if isinstance(model, Density):
        what = f"{name}: test NLL ({model.estimator(zoo.test_samples)}) on {len(X)} items"
        print(what, flush=True)
        metrics |= test_figures(model, X, zoo.test_samples, progress=what)
        if isinstance(model, PartitionEstimate):  # the log Z the figure rests on, with AIS's -3 and +3 sigma bars
            metrics |= dict(zip(("log_z", "log_z_lower", "log_z_upper"), model.log_partition(), strict=True))
    return metrics | pictures(model, name, shape, zoo, X)


def pictures(model, name: str, shape: tuple[int, ...], zoo: ZooParams, X: np.ndarray) -> dict:
    """reports/zoo/families/<name>/: samples.png, filters.png and codes.png (of test items
    ``X``), each the picture or a one-line note why there is none; the codes' figures."""
    metrics, folder, grey = {}, REPORTS / name, len(shape) == 3 and shape[0] == 1
    if isinstance(model, Sampler) and grey:
        with torch.no_grad():
            drawn = model.sample(zoo.samples, torch.Generator().manual_seed(0))
        samples_figure(drawn, shape[1:], folder / "samples.png", title=f"{name}: {zoo.samples} samples")
    else:
        why = "it does not sample" if not isinstance(model, Sampler) else "its items are not grey images"
        word_table_figure(folder / "samples.png", {"": [f"no samples drawn: {why}"]}, f"{name}: samples")
    if isinstance(model, Filters) and grey:
        W = model.filters().float().cpu().numpy()
        filters_figure(folder / "filters.png", W, shape[1:], n=FILTERS_SHOWN,
                       title=f"{name}: first-layer filters, {min(FILTERS_SHOWN, W.shape[1])} of {W.shape[1]}")
    else:
        why = "it has no first-layer filters" if not isinstance(model, Filters) else "its items are not grey images"
        word_table_figure(folder / "filters.png", {"": [f"no filters drawn: {why}"]}, f"{name}: filters")
    if isinstance(model, Encoder):  # how sparse its codes of the test items are
        model.eval()
        with torch.no_grad():
            codes = torch.cat([model.encode(x) for x in torch.from_numpy(X).split(ENCODE_BATCH)]).float().numpy()
        metrics |= codes_figure(folder / "codes.png", codes, f"{name}: codes of {len(codes)} test items")
    else:
        word_table_figure(folder / "codes.png", {"": ["no codes: it does not encode"]}, f"{name}: codes")
    return metrics


def text_pictures(model, name: str, zoo: ZooParams) -> dict:
    """reports/zoo/families/<name>/: samples.png, lines of text a sequence family drew (END shown
    as a pilcrow, other control bytes as a dot); filters.png and codes.png say there are none."""
    folder = REPORTS / name
    with torch.no_grad():
        drawn = model.sample(TEXT_SAMPLES, torch.Generator().manual_seed(0), length=TEXT_LINE * TEXT_LINES)
    lines = [line for row in drawn.tolist() for line in _text_lines(row)]
    word_table_figure(folder / "samples.png", {"": lines}, f"{name}: {TEXT_SAMPLES} samples of "
                      f"{TEXT_LINE * TEXT_LINES} bytes")
    for file, what in (("filters.png", "filters"), ("codes.png", "codes")):
        word_table_figure(folder / file, {"": [f"no {what}: it models byte sequences"]}, f"{name}: {what}")
    return {}


def _text_lines(row: list[int]) -> list[str]:
    text = "".join("\u00b6" if b == END else chr(b) if 32 <= b < 127 or b >= 160 else "\u00b7" for b in row)
    lines = [text[i:i + TEXT_LINE] for i in range(0, len(text), TEXT_LINE)]
    return [line.replace("$", r"\$") for line in lines] + [""]  # a bare $ starts matplotlib's mathtext


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", help="a family listed in zoo.families, or a variant named in zoo.variants "
                                           "(params.yaml)")
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        zoo = load_params("zoo", args.params)
        if args.family not in zoo.names:
            raise DulError(f"{args.family} is neither in zoo.families ({', '.join(zoo.families)}) nor in "
                           f"zoo.variants ({', '.join(zoo.variants) or 'none'}); add it there and give it a "
                           "params section")
        work(args.family, load_family_params(args.family, args.params), zoo)
    except DulError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

