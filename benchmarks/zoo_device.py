"""Zoo families trained and measured on one device, in this process: the prepared
script for the GPU machine, which has PyTorch, NumPy, pyarrow and PyYAML but no
Ray, MLflow or DVC (so nothing here imports them), and takes at most 64 MiB a call.

For each name of ``--names`` (a family of ``zoo.families`` or a variant of
``zoo.variants`` in ``--params``, with its own section) on the prepared data in
``--data`` (what ``python -m pipelines.ingest`` writes, e.g. data/prepared):

- trains it through the one training loop (components/training/family.py, the
  loop the train stage runs as a Ray Train job) on ``--device``, keeping the
  last epoch as the stage does; seconds are wall time with the device synchronised;
- a density: its test NLL as the likelihood report measures it (the zoo's
  estimator and ``zoo.test_samples``; ``zoo.test_items`` items, 0 all);
  a sequence family: bits per character of the test stream;
- a sampler of images: ``--samples`` binary samples drawn with ``--seed``
  (OUT/samples/<name>.npy, uint8) and, given ``--scorer`` (the scorer stage's
  models/scorer.pt, trained on the same data), the sample report's row for them
  (Fréchet, KID, precision, recall, density, coverage, Parzen) against as many
  binarized test items;
- writes OUT/models/<name>.pt, a zoo checkpoint (``components.models.registry.load``;
  put it in models/zoo/ and the samples stage scores it like its own).

OUT/zoo-device.json is rewritten after every name (a run cut short keeps what it
finished): the device, the torch version, the params file and one row per name.

With ``--checkpoints DIR`` the loop saves its whole state (model, optimizers,
history) after every epoch to DIR/<name>/state.pt, and a rerun resumes from it,
so a training longer than one command's limit (10 minutes on the GPU machine)
runs over several calls. The loop seeds every epoch from (seed, epoch), so the
resumed epochs draw what an uninterrupted run would; the row's
``resumed_at_epoch`` says where this call started and ``train_seconds`` counts
this call's epochs only. DIR/<name>/params.json records the params the state
was trained with: a rerun with other params (``epochs`` aside) is an error, and
so is a longer ``epochs`` for a run that finished (it keeps no optimizer state
to go on from; it is handed back as it is).

    python benchmarks/zoo_device.py --data data/prepared --params docs/results/zoo-fashion-mnist/device-params.yaml \\
        --names pixelcnn gated-pixelcnn dcgan --scorer models/scorer.pt --device cuda --out "$OUT"
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import as_dict, load_family_params, load_params  # noqa: E402
from components.data import item_shape, read_card  # noqa: E402
from components.data.binarize import split_inputs  # noqa: E402
from components.data.chars import read_stream  # noqa: E402
from components.errors import DulError  # noqa: E402
from components.evaluation.sample_scores import binary_samples, score_samples  # noqa: E402
from components.io import save_torch, write_json  # noqa: E402
from components.models import registry  # noqa: E402
from components.models.base import Density, Sampler  # noqa: E402
from components.training import family, loop  # noqa: E402
from components.training.sequences import stream_figures  # noqa: E402

PARZEN_ITEMS = 1000  # as the samples stage: validation items choose sigma, the first test items are scored


def device_line(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(name: str, data: Path, params_file: Path, zoo, device: torch.device,
          checkpoints: Path | None = None) -> tuple[torch.nn.Module, dict]:
    """Train ``name`` on ``device`` through the loop in this process, resuming from
    ``checkpoints``/<name>/state.pt where there is one; (the model, its row so far)."""
    kind = zoo.family_of(name)
    params = load_family_params(name, params_file)
    config = {"family": kind, "name": name, "data_dir": str(data), "shape": list(item_shape(read_card(data), data)),
              "params": params, "zoo": zoo}
    folder = checkpoints / name if checkpoints is not None else None
    resumed, finished = session_epochs(folder)
    if folder is not None:
        check_same_params(folder, name, as_dict(params), resumed)
    if finished and resumed != params.epochs:
        raise DulError(f"{folder / 'state.pt'} holds a finished {resumed}-epoch run of {name} but its params say "
                       f"{params.epochs} epochs: a finished run keeps no optimizer state to go on from; remove "
                       f"{folder} to train afresh")
    if resumed:
        print(f"  {name}: {'finished' if finished else 'resuming after'} epoch {resumed} in {folder / 'state.pt'}",
              flush=True)
    session = loop.LocalSession(device, folder, on_epoch=lambda row: print(
        f"  {name} " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
        flush=True))
    synchronize(device)
    start = time.perf_counter()
    state = loop.run_in_process(family.family_loop, config, session=session)
    synchronize(device)
    seconds = time.perf_counter() - start
    (checkpoint,) = state["done"]
    model = registry.load(checkpoint).to(device)
    return model, {"name": name, "family": kind, "params": as_dict(params), "train_seconds": round(seconds, 1),
                   **({"resumed_at_epoch": resumed} if resumed else {}),
                   "parameters": family.parameter_count(model), "curve": state["history"], "checkpoint": checkpoint}


def session_epochs(folder: Path | None) -> tuple[int, bool]:
    """(epochs the checkpoint in ``folder`` holds, whether its run finished); (0, False): a fresh start."""
    path = folder / "state.pt" if folder is not None else None
    if path is None or not path.exists():
        return 0, False
    state = torch.load(path, weights_only=True, map_location="cpu")
    return len(state["history"]), state["phase"] > 0


def check_same_params(folder: Path, name: str, params: dict, resumed: int) -> None:
    """Record ``params`` in folder/params.json, or a one-line DulError where the state there
    was trained with other params (``epochs`` aside: a cut run may be given more)."""
    path = folder / "params.json"
    if resumed and path.exists():
        before = json.loads(path.read_text())
        changed = sorted(k for k in before.keys() | params.keys() if k != "epochs" and before.get(k) != params.get(k))
        if changed:
            raise DulError(f"{folder / 'state.pt'} was trained with other params for {name} "
                           f"({', '.join(f'{k}: {before.get(k)} now {params.get(k)}' for k in changed)}); "
                           f"give the same params, or remove {folder} to train afresh")
    write_json(path, params)


def measure(model, row: dict, data: Path, zoo, args, out: Path, device: torch.device) -> dict:
    """The row's figures: test NLL or bits per character, and for an image sampler its samples (and scores)."""
    inputs = family.family_inputs(model)
    start = time.perf_counter()
    if inputs == "sequence":
        stream = torch.from_numpy(read_stream(data, "test"))
        stream = (stream[:zoo.test_items] if zoo.test_items else stream).to(device)
        row |= stream_figures(model, stream)
    elif isinstance(model, Density):
        X = split_inputs(data, "test", inputs, zoo)
        X = X[:zoo.test_items] if zoo.test_items else X
        row |= family.test_figures(model, X, zoo.test_samples)
    synchronize(device)
    row["test_seconds"] = round(time.perf_counter() - start, 1)
    if isinstance(model, Sampler) and inputs != "sequence" and args.samples:
        start = time.perf_counter()
        drawn = binary_samples(model, args.samples, args.seed)
        synchronize(device)
        row |= {"samples": len(drawn), "seed": args.seed, "sample_seconds": round(time.perf_counter() - start, 1)}
        path = out / "samples" / f"{row['name']}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, drawn.astype(np.uint8))
        if args.scorer is not None:
            row |= scores(drawn, data, zoo, args.scorer)
    return row


def scores(drawn: np.ndarray, data: Path, zoo, scorer_file: Path) -> dict:
    """The samples stage's figures for ``drawn`` (N, D) in the scorer's features, against N test items."""
    from components.evaluation.scorer import ScorerNet

    scorer = ScorerNet.from_checkpoint(registry.read_checkpoint(scorer_file))
    test = split_inputs(data, "test", "binary", zoo)
    if len(test) < len(drawn):
        raise DulError(f"{len(drawn)} samples but only {len(test)} test items to score them against; "
                       f"lower --samples to at most {len(test)}")
    real = test[:len(drawn)]
    valid = split_inputs(data, "validation", "binary", zoo)[:PARZEN_ITEMS]
    return score_samples(scorer.embed, scorer.embed(real), drawn, valid, real[:PARZEN_ITEMS])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"),
                        help="prepared data (card.json and the splits; default: %(default)s)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="params file with a zoo section and one section per name (default: %(default)s)")
    parser.add_argument("--names", nargs="+", required=True, help="zoo families or variants to train, in order")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda where there is one, else cpu)")
    parser.add_argument("--samples", type=int, default=1000, help="samples drawn per image sampler, 0: none "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the samples' seed (default: %(default)s)")
    parser.add_argument("--scorer", type=Path, default=None, help="the scorer stage's models/scorer.pt for this "
                        "data: score the samples as the samples stage does (default: samples only)")
    parser.add_argument("--out", type=Path, required=True, help="folder for zoo-device.json, models/ and samples/")
    parser.add_argument("--checkpoints", type=Path, default=None, help="keep each name's training state here "
                        "after every epoch (DIR/<name>/state.pt) and resume from it on a rerun (default: none)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (default: %(default)s, this machine's)")
    args = parser.parse_args(argv)
    try:
        if args.samples < 0:
            raise DulError(f"--samples is {args.samples}; give 0 (no samples) or more")
        if args.threads < 1:
            raise DulError(f"--threads is {args.threads}; give 1 or more")
        torch.set_num_threads(args.threads)
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DulError("--device cuda but torch sees no CUDA device here; pass --device cpu")
        zoo = load_params("zoo", args.params)
        unknown = [name for name in args.names if name not in zoo.names]
        if unknown:
            raise DulError(f"{', '.join(unknown)}: not in zoo.families or zoo.variants of {args.params}")
        report = {"device": device_line(device), "torch": torch.__version__, "params_file": str(args.params),
                  "data": read_card(args.data).get("dataset"), "command": " ".join(sys.argv), "rows": []}
        print(report["device"], flush=True)
        for name in args.names:
            model, row = train(name, args.data, args.params, zoo, device, args.checkpoints)
            save_torch(args.out / "models" / f"{name}.pt", row.pop("checkpoint"))
            row = measure(model, row, args.data, zoo, args, args.out, device)
            shown = {k: v for k, v in row.items() if k not in ("params", "curve")}
            print(f"{name}: {json.dumps(shown)}", flush=True)
            report["rows"].append(row)
            write_json(args.out / "zoo-device.json", report)
    except DulError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
