"""What every stage script shares: --help, reading its params section, and
turning a ``DulError`` into one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from components.config import PARAMS_FILE, load_params
from components.errors import DulError


def entry(stage: str, doc: str, work: Callable[[object], None]) -> Callable[[list[str] | None], int]:
    """Build the ``main(argv)`` of a stage: parse args, load ``params.yaml[stage]``, run ``work``."""

    def main(argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=f"python -m pipelines.{stage}", description=doc,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
        args = parser.parse_args(argv)
        try:
            work(load_params(stage, args.params))
        except DulError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0

    return main


def run(main: Callable[[list[str] | None], int]) -> None:
    sys.exit(main(None))
