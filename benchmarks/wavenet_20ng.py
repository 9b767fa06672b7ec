"""WaveNet against an interpolated modified Kneser-Ney n-gram, in bits per character of
20 Newsgroups' bydate test posts.

Both read the same byte streams (components/data/chars.py: each post's bytes,
then the end-of-post byte; headers, footers and quotes removed as the params
say), ingested here from the local archive:

- Kneser-Ney (components/evaluation/ngram.py) is fitted on the training
  stream for every order of ``--orders``; the order with the fewest bits per
  character on the validation stream is the one scored on test.
- WaveNet (the zoo's ``wavenet`` family, its section of ``--params``) trains
  through the one training loop in this process (no Ray): epochs of random
  windows of the training stream, each epoch ending with bits per character on
  evenly spaced blocks of the validation stream; the epoch with the fewest is
  kept and scored on test.

The test stream is read for nothing else: all of it, or with ``--test-chars``
evenly spaced blocks of about that many bytes (both models then on the same
blocks; Kneser-Ney on the whole stream too). Prints the CPU, each epoch, both
figures, wall times and a sampled text; writes ``--out`` (JSON) and the kept
WaveNet beside ``--data`` (``wavenet.pt``, a zoo checkpoint). With
``--checkpoints DIR`` the training state and the best epoch so far are kept in
DIR after every epoch (as ``zoo_device.py --checkpoints`` does) and a rerun goes
on from them: a training longer than one GPU call continues in the next. With
``--init CHECKPOINT`` (a ``wavenet.pt`` an earlier run kept, of the same
widths and depth) the training starts from its weights instead of fresh ones,
with a fresh Adam and the params' rate and schedule: a warm restart, so a
longer training can be had in two runs, the second's command naming the first's
checkpoint.

    nice python benchmarks/wavenet_20ng.py [--params docs/results/wavenet-20ng/params.yaml] \\
        [--orders 3 4 5 6 7 8] [--test-chars 0] [--threads 1] [--out docs/results/wavenet-20ng.json] \\
        [--checkpoints DIR] [--init wavenet.pt]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the GPU machine has no editable install of dul

from components.config import as_dict, load_family_params, load_params, parse_section  # noqa: E402
from components.data import ingest  # noqa: E402
from components.data.chars import END, read_stream  # noqa: E402
from components.errors import DulError  # noqa: E402
from components.evaluation.ngram import choose_order  # noqa: E402
from components.io import save_torch, write_json  # noqa: E402
from components.models import registry  # noqa: E402
from components.training import family, loop  # noqa: E402
from components.training.pretrain import cpu_line  # noqa: E402
from components.training.sequences import spaced_blocks, stream_figures  # noqa: E402

SAMPLE_BYTES = 600



class KeepBest(loop.LocalSession):
    """The loop in this process, keeping the model of the epoch with the fewest validation bits."""

    def __init__(self, device: torch.device, folder: Path | None = None):
        super().__init__(device, folder, on_epoch=lambda row: print(
            "  " + "  ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True))
        best = folder / "best.pt" if folder is not None else None
        self.best: dict | None = (torch.load(best, weights_only=True, map_location="cpu")
                                  if best is not None and best.exists() else None)

    def save(self, state: dict, row: dict) -> None:
        if row and (self.best is None or row["valid_bits_per_char"] < self.best["valid_bits_per_char"]):
            weights = state["unit"]["model"] if state["unit"] is not None else state["done"][-1]["state_dict"]
            self.best = {"epoch": row["epoch"], "valid_bits_per_char": row["valid_bits_per_char"],
                         "state_dict": copy.deepcopy(weights)}
            if self.folder is not None:  # before the state: a state on disk never runs ahead of its best
                save_torch(self.folder / "best.pt", self.best)
        super().save(state, row)


ARCHITECTURE = ("channels", "skip_channels", "head", "blocks", "layers", "kernel")


def initial_weights(path: Path, params) -> dict:
    """The weights of the WaveNet checkpoint at ``path``, or a one-line DulError where it is
    missing, not a WaveNet, or of other widths or depth than ``params``."""
    if not path.is_file():
        raise DulError(f"--init {path}: no such file; give a wavenet.pt an earlier run of this script kept")
    try:
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a file that is no checkpoint
        raise DulError(f"--init {path} is not a torch checkpoint ({type(error).__name__}); give a wavenet.pt") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("family") != "wavenet":
        family_name = checkpoint.get("family") if isinstance(checkpoint, dict) else None
        raise DulError(f"--init {path} holds a {family_name or 'non-zoo'} checkpoint, not a wavenet one")
    held, wanted = checkpoint["params"], as_dict(params)
    changed = [k for k in ARCHITECTURE if held.get(k) != wanted[k]]
    if changed:
        differences = ", ".join(f"{k}: {held.get(k)} there, {wanted[k]} here" for k in changed)
        raise DulError(f"--init {path} is another net than the params' ({differences}); give its widths and depth "
                       "in the wavenet section")
    return checkpoint["state_dict"]


def warm_phase(config: dict, weights: dict | None) -> loop.Phase:
    """The family's training phase, its model starting from ``weights`` where given (a
    resumed epoch's state replaces them, as it replaces fresh ones)."""
    phase = family.family_phase(config)
    if weights is None:
        return phase

    def build(done: list[dict], session: loop.Session):
        unit = phase.build(done, session)
        unit.model.load_state_dict(weights)
        return unit

    return dataclasses.replace(phase, build=build)


def train_wavenet(data: Path, params, device: torch.device, checkpoints: Path | None = None,
                  init: Path | None = None) -> tuple[torch.nn.Module, dict]:
    zoo = parse_section("zoo", {"families": ["wavenet"]})
    config = {"family": "wavenet", "data_dir": str(data), "shape": [None], "params": params, "zoo": zoo}
    weights = initial_weights(init, params) if init is not None else None
    if checkpoints is not None:
        from zoo_device import check_same_params, session_epochs  # the GPU script's guard, beside this one

        resumed, finished = session_epochs(checkpoints)
        check_same_params(checkpoints, "wavenet", as_dict(params) | ({"init": str(init)} if init else {}), resumed)
        if finished and resumed != params.epochs:
            raise DulError(f"{checkpoints / 'state.pt'} holds a finished {resumed}-epoch run but the params say "
                           f"{params.epochs} epochs; remove {checkpoints} to train afresh")
        if resumed:
            print(f"wavenet: {'finished' if finished else 'resuming after'} epoch {resumed} in {checkpoints}",
                  flush=True)
    session, start = KeepBest(device, checkpoints), time.perf_counter()
    state = loop.train([warm_phase(config, weights)], session, stage="train@wavenet")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    checkpoint = {**state["done"][0], "state_dict": session.best["state_dict"]}
    model = registry.load(checkpoint).to(device)
    return model, {"train_seconds": round(seconds, 1), "epoch_kept": session.best["epoch"],
                   "valid_bits_per_char": session.best["valid_bits_per_char"], "history": state["history"]}


def printable(row: list[int]) -> str:
    """Sampled bytes as text: END as a new-post mark, other control bytes as a dot."""
    return "".join("\n<END OF POST>\n" if b == END else chr(b) if b in (9, 10) or 32 <= b < 127 or b >= 160
                   else "\u00b7" for b in row)


def reduced(params, train_bytes: int, threads: int) -> str:
    seen = params.epochs * params.steps * params.batch_size * params.window
    return (f"CPU size (no GPU lent): a small WaveNet ({params.channels} residual / {params.skip_channels} skip "
            f"channels, {params.blocks} blocks of {params.layers} layers, a {params.head}-unit output layer) trained "
            f"for {params.epochs} x {params.steps} batches of {params.batch_size} x {params.window} bytes ({seen:,} "
            f"bytes, {seen / train_bytes:.2f} passes' worth of the training stream), {threads} torch thread(s); the "
            f"epoch kept by validation bits on about {params.valid_chars:,} evenly spaced bytes of the validation "
            "stream. Kneser-Ney is not reduced.")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "docs/results/wavenet-20ng/params.yaml")
    parser.add_argument("--data", type=Path, default=REPO / "benchmarks/results/wavenet-20ng/prepared",
                        help="where the character ingest is written")
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8], help="Kneser-Ney orders tried")
    parser.add_argument("--test-chars", type=int, default=0, help="test bytes scored, in evenly spaced blocks; 0: all")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a busy machine)")
    parser.add_argument("--device", default="cpu", help="torch device WaveNet trains and scores on (cuda on the GPU "
                        "machine; Kneser-Ney counts on the CPU) (default: %(default)s)")
    parser.add_argument("--source", type=Path, default=None, help="the bydate archive or folder (default: the params' "
                        "ingest.source)")
    parser.add_argument("--out", type=Path, default=REPO / "docs/results/wavenet-20ng.json")
    parser.add_argument("--checkpoints", type=Path, default=None, help="keep the training state and the best epoch "
                        "here after every epoch and go on from them on a rerun (default: none)")
    parser.add_argument("--init", type=Path, default=None, help="start from this wavenet.pt's weights (an earlier "
                        "run's, same widths and depth) with a fresh Adam and the params' schedule (default: fresh)")
    return parser.parse_args()


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    print(cpu_line(), f"; torch threads {args.threads}; load average {os.getloadavg()[0]:.1f}", flush=True)
    ingest_params, params = load_params("ingest", args.params), load_family_params("wavenet", args.params)
    device = torch.device(args.device)
    if args.init is not None and args.init.resolve() == (args.data.parent / "wavenet.pt").resolve():
        raise DulError(f"--init {args.init} is where this run writes the WaveNet it keeps; copy it elsewhere first")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DulError("--device cuda but torch sees no CUDA device here; pass --device cpu")
    source = args.source or (ingest_params.source if Path(ingest_params.source).is_absolute()
                             else REPO / ingest_params.source)
    start = time.perf_counter()
    card = ingest("20newsgroups", args.data, source=str(source), remove=ingest_params.remove, seed=ingest_params.seed,
                  validation_fraction=ingest_params.validation_fraction, representation="chars")
    print(f"ingest: {time.perf_counter() - start:.0f} s; bytes " + ", ".join(
        f"{s} {card['splits'][s]['stream_characters']:,}" for s in card["splits"]), flush=True)
    train, valid, test = (read_stream(args.data, split) for split in ("train", "validation", "test"))
    blocks = spaced_blocks(len(test), args.test_chars, registry.family_class("wavenet").block)

    start = time.perf_counter()
    kn, by_order = choose_order(train, valid, args.orders)
    kn_fit = time.perf_counter() - start
    print(f"kneser-ney: validation bits per char by order {({k: round(v, 4) for k, v in by_order.items()})}; "
          f"order {kn.order} kept ({kn_fit:.0f} s)", flush=True)
    start = time.perf_counter()
    kn_logp = kn.log_probs(test)
    kn_test = time.perf_counter() - start

    print(f"wavenet: {as_dict(params)}", flush=True)
    model, trained = train_wavenet(args.data, params, device, args.checkpoints, args.init)
    save_torch(args.data.parent / "wavenet.pt", model.to_checkpoint())  # the epoch kept, for registry.load
    start = time.perf_counter()
    figures = stream_figures(model, torch.from_numpy(test).to(device), blocks)
    wavenet_test = time.perf_counter() - start
    scored = np.arange(len(test)) if blocks is None else np.concatenate(
        [np.arange(b * model.block, min((b + 1) * model.block, len(test))) for b in blocks.tolist()])
    kn_bits = float(-kn_logp[scored].mean() / math.log(2))
    start = time.perf_counter()
    sample = model.sample(1, torch.Generator().manual_seed(0), length=SAMPLE_BYTES)[0].tolist()
    sample_seconds = time.perf_counter() - start
    print(f"\nsample ({SAMPLE_BYTES} bytes, {sample_seconds:.0f} s):\n{printable(sample)}\n", flush=True)

    parameters = int(sum(p.numel() for p in model.parameters()))
    result = {
        "figure": "bits per character (byte) of the 20 Newsgroups bydate test posts as one stream (each post's bytes, "
                  "then an end-of-post byte); lower is better",
        "rows": [
            {"model": "wavenet", "bits_per_char": round(figures["bits_per_char"], 4), "parameters": parameters,
             "receptive_field": model.receptive_field, "epoch_kept": trained["epoch_kept"],
             "valid_bits_per_char": round(trained["valid_bits_per_char"], 4),
             "train_seconds": trained["train_seconds"], "test_seconds": round(wavenet_test, 1)},
            {"model": f"kneser-ney-{kn.order}", "bits_per_char": round(kn_bits, 4), "order": kn.order,
             "valid_bits_per_char_by_order": {str(k): round(v, 4) for k, v in by_order.items()},
             "fit_seconds": round(kn_fit, 1), "test_seconds": round(kn_test, 1),
             "bits_per_char_whole_test": round(float(-kn_logp.mean() / math.log(2)), 4)},
        ],
        "wavenet_beats_kneser_ney": figures["bits_per_char"] < kn_bits,
        "test": {"bytes_scored": int(len(scored)), "bytes_in_split": int(len(test)), "posts": card["splits"]["test"]
                 ["count"], "subset": "all" if blocks is None else f"{len(blocks)} evenly spaced blocks of "
                 f"{model.block} bytes, each with its true context"},
        **({"reduced": True, "reduced_what": reduced(params, len(train), args.threads)} if device.type == "cpu" else
           {"reduced": False, "device": f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"}),
        "params": {"file": str(args.params.relative_to(REPO)) if args.params.is_relative_to(REPO) else str(args.params),
                   "ingest": as_dict(ingest_params), "wavenet": as_dict(params), "kneser_ney_orders": args.orders,
                   **({"init": str(args.init)} if args.init else {})},
        "validation_curve": trained["history"],
        "sample": printable(sample),
        "cpu": cpu_line(), "threads": args.threads, "load_average_end": round(os.getloadavg()[0], 1),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=REPO).stdout.strip(),
        "command": "nice python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    print(f"wavenet {figures['bits_per_char']:.4f} bits/char ({parameters:,} parameters, epoch "
          f"{trained['epoch_kept']} kept, {trained['train_seconds']:.0f} s training, {wavenet_test:.0f} s test); "
          f"kneser-ney order {kn.order} {kn_bits:.4f} ({kn_fit:.0f} s fit, {kn_test:.0f} s test); "
          f"{len(scored):,} test bytes", flush=True)
    return result


def write_report(run, args: argparse.Namespace) -> int:
    """``run(args)``'s result to ``args.out`` (JSON), exit 0; a DulError is one line on stderr,
    exit 2, nothing written (wavenet_bf16.py's main too)."""
    try:
        result = run(args)
    except DulError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_json(args.out, result)
    print(f"-> {args.out}")
    return 0


def main() -> int:
    return write_report(run, arguments())


if __name__ == "__main__":
    sys.exit(main())
