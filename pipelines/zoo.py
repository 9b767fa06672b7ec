"""Stage zoo: one likelihood report across the families the zoo trained.

Gathers reports/zoo/families/<family>/metrics.json of every family in zoo.families
and every variant in zoo.variants (its row named by the variant, with ``variant_of``) that has a density into reports/zoo/likelihood.json (one row per family:
``family``, ``nll_nats`` per item, ``estimator`` (exact, elbo, is-<k>,
ais), ``stderr``, ``bits_per_dim``, ``parameters``, ``train_seconds``, plus
``dataset`` and ``binarization``; for an AIS-based density also ``log_z``
with its bars ``log_z_lower`` and ``log_z_upper``; best first), the same as a Markdown table
(reports/zoo/likelihood.md) and a CSV for DVC's bar plot, and a picture of
samples, one row per family that samples images (reports/zoo/samples.png,
drawn from models/zoo/<family>.pt with a fixed seed).

``train_seconds`` is the one figure here that measures the run rather than
its result: it differs between two runs of the same inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from components import tracking
from components.config import ZooParams, as_dict
from components.data import item_shape, read_card
from components.errors import DulError
from components.evaluation.samples import samples_figure
from components.io import write_csv, write_json, write_text
from components.models import registry
from components.models.base import Sampler
from pipelines._stage import entry, run

DATA = Path("data/prepared")
MODELS = Path("models/zoo")
FAMILIES = Path("reports/zoo/families")
REPORTS = Path("reports/zoo")
COLUMNS = ("family", "nll_nats", "stderr", "estimator", "bits_per_dim", "parameters", "train_seconds")
LOG_Z = ("log_z", "log_z_lower", "log_z_upper")  # families whose density rests on an AIS estimate of log Z
OPTIONAL = (*LOG_Z, "variant_of")  # in a row only where its family's metrics have them
SHOWN_PER_FAMILY = 10


def work(zoo: ZooParams) -> None:
    with tracking.stage_run("zoo", as_dict(zoo), deps=[FAMILIES, MODELS]) as mlrun:
        rows = likelihood_rows(zoo.names)
        write_json(REPORTS / "likelihood.json", rows)
        write_csv(REPORTS / "likelihood.csv", [{"family": r["family"], "nll_nats": r["nll_nats"]} for r in rows]
                  or [{"family": "none", "nll_nats": 0.0}])
        write_text(REPORTS / "likelihood.md", markdown_table(rows, zoo))
        drawn = samples_grid(zoo.names)
        mlrun.log_metrics({f"{r['family']}_nll_nats": r["nll_nats"] for r in rows})
        for name in ("likelihood.json", "likelihood.md", *(["samples.png"] if drawn else [])):
            mlrun.log_artifact(REPORTS / name, "zoo")
    print("zoo: " + ", ".join(f"{r['family']} {r['nll_nats']:.2f} ({r['estimator']})" for r in rows))


def likelihood_rows(families) -> list[dict]:
    """The families' test figures, lowest NLL first; families without a density are left out."""
    rows = []
    for family in families:
        path = FAMILIES / family / "metrics.json"
        if not path.exists():
            raise DulError(f"{path} is missing: run {family}'s stage (train@ or variant@) first (dvc repro)")
        metrics = json.loads(path.read_text())
        if "nll_nats" in metrics:
            rows.append({k: metrics[k] for k in (*COLUMNS, "dataset", "binarization", "n_test", *OPTIONAL)
                         if k in metrics or k not in OPTIONAL})
    return sorted(rows, key=lambda row: row["nll_nats"])


def markdown_table(rows: list[dict], zoo: ZooParams) -> str:
    """The report as a Markdown table, with the protocol it was measured on."""
    lines = [f"Test negative log-likelihood per item, nats (lower is better); binarization: {zoo.binarization} "
             f"(seed {zoo.binarization_seed}); importance samples: {zoo.test_samples}.", "",
             "| family | NLL (nats) | ± stderr | estimator | bits/dim | parameters | train s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['nll_nats']:.2f} | {r['stderr']:.2f} | {r['estimator']} | "
                     f"{r['bits_per_dim']:.4f} | {r['parameters']:,} | {r['train_seconds']:.0f} |")
    for r in rows:
        if "log_z" in r:  # the NLL moves one for one with log Z: its bars are the figure's other uncertainty
            lines.append(f"\n{r['family']}: log Z = {r['log_z']:.3f} by AIS, -3/+3 sigma bars "
                         f"[{r['log_z_lower']:.3f}, {r['log_z_upper']:.3f}]; the NLL moves with it one for one.")
    return "\n".join(lines) + "\n"


def samples_grid(families) -> bool:
    """reports/zoo/samples.png: ``SHOWN_PER_FAMILY`` samples of each image sampler, a row each."""
    shape = item_shape(read_card(DATA), DATA)
    if len(shape) != 3 or shape[0] != 1:
        return False
    rows, names = [], []
    for family in families:
        model = registry.load(MODELS / f"{family}.pt")
        if isinstance(model, Sampler):
            with torch.no_grad():
                rows.append(model.sample(SHOWN_PER_FAMILY, torch.Generator().manual_seed(0)).cpu().numpy())
            names.append(family)
    if not rows:
        return False
    samples_figure(np.concatenate(rows), shape[1:], REPORTS / "samples.png",
                   title=f"{SHOWN_PER_FAMILY} samples a row: {', '.join(names)}", columns=SHOWN_PER_FAMILY)
    return True


main = entry("zoo", __doc__, work)

if __name__ == "__main__":
    run(main)

