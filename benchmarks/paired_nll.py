"""Is one zoo family really better than another on the same test items? A paired comparison.

    python benchmarks/paired_nll.py models/zoo/vae.pt models/zoo/iwae.pt [--data data/prepared]
        [--samples 5000] [--items 0] [--params params.yaml]

The likelihood report gives each family's mean test NLL with its own standard
error over items; two families measured on the same items differ far less
from item to item than the items differ from each other, so the standard
error of their difference, sqrt(var(nll_a - nll_b) / N), is what says whether
a gap is real. Both models see the same test split, binarized by the zoo's
protocol in ``--params``, and their estimates use the same seed. Prints each
family's mean NLL and the mean difference with its paired standard error.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from components.config import load_params
from components.models import registry
from components.training.family import family_inputs, split_inputs


def per_item_nll(model, X, samples: int, batch: int = 100) -> torch.Tensor:
    """-log p(x) per item (N,), float64, seeded like the zoo's test figures."""
    torch.manual_seed(0)
    with torch.no_grad():
        return torch.cat([-model.log_prob(torch.from_numpy(X[i:i + batch]), samples=samples).double()
                          for i in range(0, len(X), batch)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="a zoo checkpoint (a Density)")
    parser.add_argument("b", type=Path, help="another, trained on the same data")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="whose zoo section binarizes")
    parser.add_argument("--samples", type=int, default=5000, help="importance samples (estimating families)")
    parser.add_argument("--items", type=int, default=0, help="the first N test items (0: all)")
    args = parser.parse_args(argv)
    zoo = load_params("zoo", args.params)
    nll, names = [], []
    for path in (args.a, args.b):
        model = registry.load(path).eval()
        X = split_inputs(args.data, "test", family_inputs(model), zoo)
        X = X[:args.items] if args.items else X
        nll.append(per_item_nll(model, X, args.samples))
        names.append(f"{model.family} ({model.estimator(args.samples)})")
    difference = nll[0] - nll[1]
    n = len(difference)
    for name, values in zip(names, nll):
        print(f"{name:22s} NLL {values.mean():.3f} ± {values.std() / math.sqrt(n):.3f} nats ({n} test items)")
    print(f"{names[0]} - {names[1]}: {difference.mean():+.3f} ± {difference.std() / math.sqrt(n):.3f} nats "
          f"(paired standard error)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
