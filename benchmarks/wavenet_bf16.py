"""WaveNet's training step with bfloat16 products against float32, side by side in one run.

The same net (the zoo's ``wavenet`` family; by default the 64-channel one of
docs/results/wavenet-20ng/params-c64.yaml), the same seed and the same
random windows of the 20 Newsgroups training bytes, trained ``--steps`` Adam
steps once with ``matmul_dtype: bfloat16`` and once with float32; then both
score the same evenly spaced validation bytes in float32. Prints the CPU
model and flags, bytes a second and bits per character for each, and the
ratios; writes ``--out`` (JSON). bfloat16 is refused (exit 2) on a CPU
without native bf16 units, where it would be emulated and slow.

    python benchmarks/wavenet_bf16.py [--data benchmarks/results/wavenet-20ng/prepared] [--steps 1000] \\
        [--threads 2] [--out docs/results/wavenet-bf16.json]

``--data`` is a character ingest (benchmarks/wavenet_20ng.py writes one there).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import as_dict, load_family_params  # noqa: E402
from components.data.chars import read_stream  # noqa: E402
from components.errors import DulError  # noqa: E402
from components.models import registry  # noqa: E402
from components.training.pretrain import cpu_line  # noqa: E402
from components.training.sequences import spaced_blocks  # noqa: E402

DTYPES = ("bfloat16", "float32")


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "docs/results/wavenet-20ng/params-c64.yaml",
                        help="the wavenet section of this file is the net trained (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=REPO / "benchmarks/results/wavenet-20ng/prepared",
                        help="a character ingest: its train and validation streams")
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps per precision (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "docs/results/wavenet-bf16.json")
    return parser.parse_args(argv)


def train_and_score(params, dtype: str, train: torch.Tensor, valid: torch.Tensor, blocks, steps: int) -> dict:
    """``steps`` steps of the family's own training step, then bits/char on the validation blocks."""
    params = type(params)(**{**as_dict(params), "matmul_dtype": dtype, "lr_decay": False})
    torch.manual_seed(params.seed)
    model = registry.build("wavenet", params, (None,))
    optimizers = model.optimizers(params)  # refuses bfloat16 where it is emulated
    generator, bits = torch.Generator().manual_seed(params.seed), []
    start = time.perf_counter()
    for _ in range(steps):
        offsets = torch.randint(0, len(train) - params.window, (params.batch_size,), generator=generator)
        x = torch.stack([train[o:o + params.window] for o in offsets.tolist()])
        bits.append(float(model.training_step(x, optimizers)["bits_per_char"]))
    seconds = time.perf_counter() - start
    model.eval()
    valid_bits = -float(model.stream_log_prob(valid, blocks).mean()) / math.log(2)
    return {"matmul_dtype": dtype, "seconds": round(seconds, 1),
            "bytes_per_second": round(steps * params.batch_size * params.window / seconds),
            "train_bits_per_char_last_100": round(float(np.mean(bits[-100:])), 4),
            "valid_bits_per_char": round(valid_bits, 4)}


def run(args: argparse.Namespace) -> dict:
    if args.steps < 1:
        raise DulError(f"--steps is {args.steps}: must be positive")
    if not (args.data / "card.json").exists():
        raise DulError(f"{args.data} holds no character ingest (no card.json): run benchmarks/wavenet_20ng.py "
                       "--data there first, or pass --data")
    torch.set_num_threads(args.threads)
    print(cpu_line(), f"; torch threads {args.threads}; load average {os.getloadavg()[0]:.1f}", flush=True)
    params = load_family_params("wavenet", args.params)
    train = torch.from_numpy(read_stream(args.data, "train")).long()
    valid = torch.from_numpy(read_stream(args.data, "validation")).long()
    blocks = spaced_blocks(len(valid), params.valid_chars, registry.family_class("wavenet").block)
    rows = []
    for dtype in DTYPES:
        rows.append(train_and_score(params, dtype, train, valid, blocks, args.steps))
        print("  ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    bf16, fp32 = rows
    result = {
        "figure": "the wavenet family's training step with bfloat16 products against float32: bytes a second, and "
                  "bits per character on evenly spaced validation bytes after the same steps",
        "rows": rows,
        "speed_ratio": round(bf16["bytes_per_second"] / fp32["bytes_per_second"], 2),
        "valid_bits_difference": round(bf16["valid_bits_per_char"] - fp32["valid_bits_per_char"], 4),
        "steps": args.steps,
        "params": {"file": str(args.params.relative_to(REPO)) if args.params.is_relative_to(REPO) else
                   str(args.params), "wavenet": as_dict(params)},
        "cpu": cpu_line(), "threads": args.threads, "load_average_end": round(os.getloadavg()[0], 1),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=REPO).stdout.strip(),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    print(f"bfloat16 {result['speed_ratio']}x the bytes a second of float32; validation bits/char "
          f"{result['valid_bits_difference']:+.4f} after {args.steps} steps", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    from wavenet_20ng import write_report  # beside this script

    return write_report(run, arguments(argv))


if __name__ == "__main__":
    sys.exit(main())
