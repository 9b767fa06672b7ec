"""Ray overhead per training stage, on an already-running Ray instance.

Each stage's real training loop (``pretrain_loop`` with two tiny layers,
``finetune_loop``; one epoch each, on digits) runs as the pipeline runs it,
a Ray Train job (``TorchTrainer``: a controller actor, one worker actor, a
checkpoint per epoch in the storage path), and the worker records when the
loop started and ended. Overhead = the job's wall time - the loop's own
time: starting the controller and the worker process, setting up the
process group, and finishing the run. A stage launched by ``dvc repro``
with ``RAY_ADDRESS`` also connects to the running instance first, timed as
``ray.init(address=...)`` from a fresh Python process, and added.

    python benchmarks/ray_overhead.py [--repeats 5]

Prints medians; exit status 1 when the median overhead of a stage exceeds
--target seconds (default 10, the issue's target).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch

from components.config import parse_section
from components.data import ingest, read_card
from components.training import runtime
from components.training.finetune import finetune_loop
from components.training.pretrain import pretrain_loop, resolved

CONNECT = """
import logging, sys, time
t = time.perf_counter()
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level=logging.ERROR)
print(time.perf_counter() - t)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each stage (default %(default)s)")
    parser.add_argument("--target", type=float, default=10.0, help="seconds of overhead allowed per stage")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="dul-ray-overhead-"))
    os.environ["DUL_RAY_STORAGE"] = str(work / "ray_results")
    ingest("digits", work / "data")
    started = time.perf_counter()
    runtime.configure_local_ray()
    ray.init(address="local", num_cpus=2, log_to_driver=False, logging_level=logging.ERROR)
    print(f"starting Ray (once, not counted): {time.perf_counter() - started:.1f} s", flush=True)

    pretrain = {"data_dir": str(work / "data"), "params": resolved(PRETRAIN, read_card(work / "data"))}
    state = runtime.fit(timed, {**pretrain, "loop": "pretrain", "timing": str(work / "t.json")},
                        name="stack", params=PRETRAIN, total_steps=2, desc="pretrain")
    torch.save({"layers": state["done"]}, work / "stack.pt")
    configs = {"pretrain": (pretrain, PRETRAIN),
               "finetune": ({"data_dir": str(work / "data"), "stack_path": str(work / "stack.pt"),
                             "params": FINETUNE}, FINETUNE)}
    wall: dict[str, list[float]] = {stage: [] for stage in configs}
    loop: dict[str, list[float]] = {stage: [] for stage in configs}
    before: dict[str, list[float]] = {stage: [] for stage in configs}
    for repeat in range(args.repeats):
        for stage, (config, params) in configs.items():
            timing = work / f"{stage}-{repeat}.json"
            started = time.time()
            runtime.fit(timed, {**config, "loop": stage, "timing": str(timing)}, name=f"{stage}-{repeat}",
                        params=params, total_steps=1, desc=stage)
            wall[stage].append(time.time() - started)
            entered, left = json.loads(timing.read_text())
            loop[stage].append(left - entered)
            before[stage].append(entered - started)
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    address = ray.get_runtime_context().gcs_address
    connect = statistics.median(
        float(subprocess.run([sys.executable, "-c", CONNECT, address], capture_output=True, text=True,
                             check=True).stdout.split()[-1]) for _ in range(args.repeats))
    ray.shutdown()

    print(f"\nmedians of {args.repeats} runs, seconds")
    print(f"{'stage':<10}{'Ray Train job':>15}{'its loop':>10}{'before it':>11}{'connect':>9}{'overhead':>10}")
    failed = False
    for stage in configs:
        overheads = [w - t for w, t in zip(wall[stage], loop[stage])]
        overhead = statistics.median(overheads) + connect
        failed |= overhead > args.target
        print(f"{stage:<10}{statistics.median(wall[stage]):>15.2f}{statistics.median(loop[stage]):>10.2f}"
              f"{statistics.median(before[stage]):>11.2f}{connect:>9.2f}{overhead:>10.2f}")
    print("before it: from the job's start to the loop's first line (controller, worker process, imports);"
          " the rest of job - loop is after the loop (last report, shutdown)")
    print(f"overhead = job - loop + connect; target <= {args.target:g} s: {'MISSED' if failed else 'met'}")
    return 1 if failed else 0


PRETRAIN = parse_section("pretrain", {"hidden": [24, 6], "epochs": 1, "max_failures": 0})
FINETUNE = parse_section("finetune", {"epochs": 1, "max_failures": 0})


def timed(config: dict) -> None:
    """Ray Train worker: the stage's own loop, with its start and end times written to config["timing"]."""
    entered = time.time()
    (pretrain_loop if config["loop"] == "pretrain" else finetune_loop)(config)
    Path(config["timing"]).write_text(json.dumps([entered, time.time()]))


if __name__ == "__main__":
    sys.exit(main())
