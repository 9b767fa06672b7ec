"""Kill `dvc repro` at a random point, rerun it, and check the result is the clean run's.

    python benchmarks/kill_repro.py [--trials 10] [--seed 0] [--work /tmp/kill-repro]

A copy of the repository (its code, small params: a 3-layer stack, two zoo
families) runs `dvc repro` once undisturbed; its outputs are the reference.
Then, ``--trials`` times, a fresh copy starts `dvc repro`, the whole process
tree (dvc, the stage, its Ray and the Ray workers) is SIGKILLed at a time
drawn uniformly from the clean run's duration, and `dvc repro` is run again
to the end. Each trial checks:

- every output DVC tracks (data, models, index, reports) is byte-identical
  to the clean run's; the zoo's ``train_seconds``, ``encode_seconds`` and
  ``probe_seconds`` (wall times, the figures that measure the run rather
  than its result) are left out of the comparison;
- no epoch is trained twice: no epoch line the killed run printed (a line is
  printed after its epoch's checkpoint is saved) is printed by the rerun.

Prints one line per trial and exits 1 if any trial fails. Takes about
1.5 clean runs a trial (about 6 minutes a trial on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUTPUTS = ("data", "models", "index", "reports")
PRODUCED = ("data/", "models/", "index/", "reports/", "dvc.lock", "docs/", "benchmarks/")
EPOCH = re.compile(r"^(layer \d+/\d+ \(.*?\) epoch \d+|finetune epoch \d+|\w+ epoch \d+)/\d+", re.MULTILINE)
PARAMS = {
    "pretrain": {"hidden": [64, 32, 6], "epochs": 12},
    "finetune": {"epochs": 10},
    "zoo": {"families": ["vae", "nade"], "test_samples": 200},
    "vae": {"epochs": 30},
    "nade": {"epochs": 30},
}


def sh(*args, cwd: Path, check: bool = True, timeout: int = 1800) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed in {cwd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def user_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DUL_", "MLFLOW_", "RAY_ADDRESS", "DVC_"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}", "DUL_RUN_GROUP": "kill-repro"}


def make_copy(folder: Path) -> Path:
    """The repository's code and small params in a new git repository, no outputs."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(PRODUCED):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, folder / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    listed = params["zoo"]["families"]
    for section, values in PARAMS.items():
        params[section].update(values)
    for family in set(listed) - set(params["zoo"]["families"]):
        params.pop(family)  # a section for an unlisted family is an error
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    for args in (("init", "-q"), ("add", "-A"), ("-c", "user.name=k", "-c", "user.email=k@k", "commit", "-qm", "k")):
        sh("git", *args, cwd=folder)
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """md5 of every output file (the zoo's JSON without its ``*_seconds``, its tables without their seconds)."""
    digests = {}
    for top in OUTPUTS:
        for path in sorted((folder / top).rglob("*")):
            if path.is_file() and ".dvc" not in path.parts:
                digests[path.relative_to(folder).as_posix()] = hashlib.md5(_comparable(path)).hexdigest()
    return digests


def _comparable(path: Path) -> bytes:
    if path.suffix == ".json" and "zoo" in path.parts:
        return json.dumps(_without_seconds(json.loads(path.read_text())), sort_keys=True).encode()
    if path.name in ("likelihood.md", "features.md"):  # their last column is seconds
        return re.sub(r"\| [\d.]+ \|\n", "|\n", path.read_text()).encode()
    return path.read_bytes()


def _without_seconds(value):
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if not k.endswith("_seconds")}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def repro(folder: Path, kill_after: float | None = None) -> tuple[str, float]:
    """`dvc repro` in ``folder`` (stdout and stderr in one stream, in order); with
    ``kill_after``, SIGKILL its whole process tree after that many seconds."""
    start = time.monotonic()
    process = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=folder, env=user_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if kill_after is None:
        output, _ = process.communicate(timeout=3600)
        if process.returncode != 0:
            raise SystemExit(f"dvc repro failed in {folder}:\n{output[-4000:]}")
        return output, time.monotonic() - start
    time.sleep(kill_after)
    kill_tree(process.pid)
    output, _ = process.communicate()
    return output, time.monotonic() - start


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything under it (collected first: orphans are reparented)."""
    try:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=30)


def trained(output: str) -> set[str]:
    return set(EPOCH.findall(output))


def trial(work: Path, reference: dict, seconds: float, rng: random.Random, index: int) -> bool:
    folder = make_copy(work / f"trial-{index}")
    at = rng.uniform(0.05, 0.95) * seconds
    killed, _ = repro(folder, kill_after=at)
    rerun, _ = repro(folder)
    twice = trained(killed) & trained(rerun)
    differ = sorted(k for k, v in snapshot(folder).items() if reference.get(k) != v)
    missing = sorted(set(reference) - set(snapshot(folder)))
    stage = (re.findall(r"Running stage '([\w@]+)'", killed) or ["(none)"])[-1]
    ok = not twice and not differ and not missing
    print(f"trial {index}: killed at {at:.0f} s in stage {stage}, after {len(trained(killed))} epochs; rerun trained "
          f"{len(trained(rerun))}; {'identical outputs' if ok else 'FAILED'}"
          + (f"; trained twice: {sorted(twice)}" if twice else "") + (f"; differ: {differ + missing}" if differ or missing else ""),
          flush=True)
    if ok:
        shutil.rmtree(folder, ignore_errors=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kill-repro"))
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    clean = make_copy(args.work / "clean")
    _, seconds = repro(clean)
    reference = snapshot(clean)
    print(f"clean run: {seconds:.0f} s, {len(reference)} output files", flush=True)
    rng = random.Random(args.seed)
    results = [trial(args.work, reference, seconds, rng, i) for i in range(1, args.trials + 1)]
    print(f"{sum(results)}/{len(results)} trials ended byte-identical to the clean run, no epoch trained twice")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
