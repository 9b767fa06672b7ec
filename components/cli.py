"""The ``dul`` command: search a retrieval index, or run one pipeline stage.

    dul search --index index/search "space shuttle launch"   # or --doc ID, --item N
    dul serve --index index/search   # the same over HTTP: a JSON API and a web page on 127.0.0.1:8000
    dul stage pretrain            # the same as the DVC stage's command
    dul lineage index/codes.npz --verify   # where an output came from, checked against dvc.lock
    dul sweep                     # a Ray Tune sweep over params.yaml's sweep.space
    dul params --check docs/params.md  # the params reference, generated from the code (or checked)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from components.errors import DulError
from components.search_command import add_search, run_search
from components.serve_command import add_serve, run_serve

STAGES = ("ingest", "pretrain", "finetune", "evaluate", "index")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dul", description="Reproducible, distributed pipelines for deep "
                                     "unsupervised learning (run the whole pipeline with `dvc repro`).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_search(commands)
    add_serve(commands)
    stage = commands.add_parser("stage", help="run one pipeline stage outside DVC (DVC runs these for you)")
    stage.add_argument("name", choices=STAGES)
    stage.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    _add_lineage(commands)
    _add_sweep(commands)
    _add_params(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "search":
            return run_search(args)
        if args.command == "serve":
            return run_serve(args)
        if args.command == "sweep":
            from components.training.sweep import run as sweep

            return sweep(args.params, args.out, args.resume)
        if args.command == "lineage":
            return _lineage(args.target, args.verify, args.format, not args.no_mlflow)
        if args.command == "params":
            return _params(args.check, args.family)
        return importlib.import_module(f"pipelines.{args.name}").main(["--params", args.params])
    except DulError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


LINEAGE_HELP = """\
TARGET is one of:
  an output path       index/codes.npz, models/stack.pt, data/prepared (or a file inside it)
  an MLflow run id     the run of a stage, e.g. 3f2a9c0d1e4b4f5a8b6c7d8e9f0a1b2c
  a registered model   models:/NAME/VERSION or models:/NAME@ALIAS (through MLflow's model registry)

For each artifact back to the raw data: its md5 (as dvc.lock records it), the
stage that produced it, that stage's command and params, the commit that last
changed dvc.lock, the MLflow runs whose dvc.outs.<path> tag holds that md5, and
for ingest the dataset card with each source file's sha256 and whether it
matched a pinned hash. MLflow is MLFLOW_TRACKING_URI, else ./mlflow.db; with no
store or no runs the lineage prints without them.

exit status: 0 ok; 1 --verify found a changed, missing or stale artifact;
2 unknown target, no dvc.lock, or an unreachable MLflow store.

example:
  dul lineage index/codes.npz --verify
  dul lineage models/stack.pt --format json
"""


def _add_sweep(commands) -> None:
    sweep = commands.add_parser(
        "sweep", help="a Ray Tune sweep of pretrain -> finetune over params.yaml's sweep.space",
        description="Run the trials of params.yaml's `sweep` section, each a pretrain -> finetune run on\n"
        "data/prepared (ASHA stops poor ones early); track them in MLflow as child runs of\n"
        "`sweep <name>`; write the best trial's swept keys to --out.",
        epilog="example:\n  dul sweep   # then: dvc exp run -S finetune.lr=...  (the command it prints)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    sweep.add_argument("--out", default="sweeps/best.yaml", help="where the best trial's params go, "
                       "params.yaml-style, only the swept keys (default: %(default)s)")
    sweep.add_argument("--resume", action="store_true", help="finish an interrupted sweep of the same params "
                       "(Ray Tune restore from its storage), or return a finished one's results")


def _add_lineage(commands) -> None:
    lineage = commands.add_parser("lineage", help="where an output, MLflow run or registered model came from",
                                  description="Print the chain from TARGET back to the raw data.",
                                  epilog=LINEAGE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    lineage.add_argument("target", metavar="TARGET", help="output path, MLflow run id, or models:/NAME/VERSION")
    lineage.add_argument("--verify", action="store_true", help="recompute every artifact's md5 on disk and check "
                         "each stage's deps against dvc.lock; exit 1 naming each changed, missing or stale one")
    lineage.add_argument("--format", choices=("tree", "json"), default="tree",
                         help="a readable tree, or one JSON document (default: %(default)s)")
    lineage.add_argument("--no-mlflow", action="store_true", help="do not look up MLflow runs")


def _add_params(commands) -> None:
    params = commands.add_parser(
        "params", help="print the params reference, generated from the code's field comments",
        description="Print one Markdown table per params.yaml stage section (docs/params.md), or a zoo family's\n"
        "(--family): every key, its default and the comment on its field in components/config.py or the\n"
        "family's Params.",
        epilog="exit status: 0 ok; 1 --check found a difference; 2 a field without a comment, no such file,\n"
        "or no markers.\n\nexamples:\n  dul params --check docs/params.md\n  dul params --family vae",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    params.add_argument("--check", metavar="FILE", help="exit 1 if FILE's reference (between <!-- params:begin --> "
                        "and <!-- params:end -->) differs from the generated one, instead of printing it")
    params.add_argument("--family", metavar="NAME", help="print zoo family NAME's section (its Params' fields)")


def _params(check: str | None, family: str | None = None) -> int:
    from components import params_doc

    try:
        if family is not None:
            print(params_doc.family_reference(family), end="", flush=True)
            return 0
        if check is None:
            print(params_doc.reference(), end="", flush=True)
            return 0
        problem = params_doc.check(check)
    except ValueError as err:  # a field without a comment: the message names it
        print(f"error: {err}", file=sys.stderr)
        return 2
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


def _lineage(target: str, check: bool, form: str, use_mlflow: bool) -> int:
    import json

    from components.tracking.lineage import lineage
    from components.tracking.lineage_format import format_tree

    doc = lineage(target, check=check, use_mlflow=use_mlflow)
    try:
        print(json.dumps(doc, indent=2, default=str) if form == "json" else format_tree(doc), flush=True)
    except BrokenPipeError:  # `dul lineage ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if doc["verified"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
