"""What the one training loop costs: the same VAE, data and batches trained by
dul's loop (components/training/loop.py, through the zoo's family phase, in
process) and by a bare PyTorch loop, in one run.

    python benchmarks/loop_overhead.py [--data data/prepared] [--epochs 20] [--repeats 5]

(``--data`` an ingested image dataset: the default pipeline's digits, or e.g. Fashion-MNIST's.)

Both draw the same batches (the loop's per-epoch seeds) and end on the same
weights (checked). The loop adds its per-epoch seeding, the finite check,
an all-reduce (a no-op for one worker), a validation figure and a
checkpoint state per epoch; the bare loop does only the steps. One warm-up
run of each first (imports, first calls); then the contenders alternate, so noise on a shared machine hits both alike; prints the CPU,
the medians and their ratio (target: at most 1.3).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from components.config import parse_section
from components.data import item_shape, read_card
from components.data.stream import TensorBatches
from components.models import registry
from components.training import family, loop


def cpu() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    flags = {f for f in (family_flags() or set()) if f.startswith(("avx", "amx"))}
    return f"{model}; {torch.get_num_threads()} threads; {' '.join(sorted(flags))}"


def family_flags() -> set[str] | None:
    from components.training.pretrain import cpu_flags

    return cpu_flags()


def dul_loop(config: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    state = loop.run_in_process(family.family_loop, config)
    return time.perf_counter() - start, state["done"][0]["state_dict"]


def bare_loop(config: dict) -> tuple[float, dict]:
    """The loop a tutorial writes, with the same seeds, so the same batches and draws."""
    params, zoo = config["params"], config["zoo"]
    start = time.perf_counter()
    torch.manual_seed(loop.seed_for(params.seed))
    model = registry.build("vae", params, tuple(config["shape"]))
    X = torch.from_numpy(family.split_inputs(config["data_dir"], "train", "binary", zoo))
    batches = TensorBatches(X, params.batch_size, len(X) // params.batch_size)
    (optimizer,) = model.optimizers(params)
    for epoch in range(params.epochs):
        torch.manual_seed(loop.seed_for(params.seed, epoch, 0))
        for x in batches.epoch(torch.Generator().manual_seed(loop.seed_for(params.seed, epoch, 0, 1))):
            loss = model.loss(x)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start, model.state_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target", type=float, default=1.3)
    args = parser.parse_args(argv)
    params = parse_section("zoo", {})
    vae = registry.params_class("vae")(epochs=args.epochs)
    config = {"family": "vae", "data_dir": str(args.data), "shape": list(item_shape(read_card(args.data), args.data)),
              "params": vae, "zoo": params}
    times = {"dul loop": [], "bare PyTorch loop": []}
    dul_loop(config), bare_loop(config)  # warm-up: imports, first calls of each op
    for _ in range(args.repeats):
        (seconds, ours), (bare_seconds, theirs) = dul_loop(config), bare_loop(config)
        times["dul loop"].append(seconds)
        times["bare PyTorch loop"].append(bare_seconds)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), "the two loops ended on different weights"
    print(f"CPU: {cpu()}")
    print(f"VAE {vae.latent}-latent, hidden {list(vae.hidden)}, {args.epochs} epochs on {args.data}, "
          f"{args.repeats} repeats, same weights at the end")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"  {name:18s} median {median:.2f} s  (all: {', '.join(f'{v:.2f}' for v in times[name])})")
    ratio = medians["dul loop"] / medians["bare PyTorch loop"]
    print(f"ratio dul / bare: {ratio:.2f} (target <= {args.target})")
    return 0 if ratio <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
