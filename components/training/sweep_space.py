"""A sweep's search space: plain data in ``params.yaml``, Ray Tune objects here.

This is the one place where the ``sweep.space`` mapping becomes Tune's
search space, so ``params.yaml`` (and ``dvc params diff``) stays plain data::

    space:
      finetune.lr: {loguniform: [1.0e-4, 1.0e-2]}   # tune.loguniform(1e-4, 1e-2)
      pretrain.epochs: {choice: [1, 2]}              # tune.choice([1, 2])

Every key must name a param of a swept stage, and every value a distribution
with arguments that the stage's dataclass accepts: the bounds of a range and
each option of a list are checked with ``config.parse_section``, so a typo or
an impossible value is a ``DulError`` naming the key before any trial runs.
"""

from __future__ import annotations

import dataclasses
import typing

from ray import tune

from components.config import SECTIONS, parse_section
from components.errors import DulError, did_you_mean

SWEPT_STAGES = ("pretrain", "finetune")
DISTRIBUTIONS = {
    "uniform": "[low, high]: floats, uniformly",
    "loguniform": "[low, high]: floats, uniformly in log scale",
    "randint": "[low, high]: integers low <= n < high",
    "choice": "[a, b, ...]: one of the options",
    "grid": "[a, b, ...]: every option (crossed with the other grid keys)",
}


def parse_space(space: dict, base: dict[str, dict]) -> dict[str, dict]:
    """``{"finetune.lr": {"loguniform": [a, b]}}`` -> ``{"finetune": {"lr": tune.loguniform(a, b)}}``.

    ``base`` holds the raw sections of ``params.yaml`` that the sampled values
    override; each value is validated against them.
    """
    if not isinstance(space, dict) or not space:
        raise DulError("sweep.space: give at least one param to sweep, e.g. "
                       "finetune.lr: {loguniform: [1.0e-4, 1.0e-2]}")
    nested: dict[str, dict] = {}
    for key, spec in space.items():
        stage, name = split_key(key)
        nested.setdefault(stage, {})[name] = _domain(key, spec, base.get(stage) or {})
    return nested


def split_key(key: str) -> tuple[str, str]:
    """``"finetune.lr"`` -> ``("finetune", "lr")``, or a DulError naming the key."""
    stage, dot, name = str(key).partition(".")
    if not dot:
        raise DulError(f"sweep.space.{key}: name a param as stage.key, e.g. finetune.lr")
    if stage not in SWEPT_STAGES:
        raise DulError(f"sweep.space.{key}: only {' and '.join(SWEPT_STAGES)} params can be swept; "
                       f"{did_you_mean(stage, SWEPT_STAGES)}")
    names = [f.name for f in dataclasses.fields(SECTIONS[stage])]
    if name not in names:
        raise DulError(f"sweep.space.{key}: unknown param; "
                       f"{did_you_mean(key, [f'{stage}.{n}' for n in names])}")
    return stage, name


def distribution(spec) -> tuple[str, list]:
    """The (kind, arguments) of a one-key mapping such as ``{loguniform: [a, b]}``."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"expected one of {_kinds()}, got {spec!r}")
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution '{kind}'; {did_you_mean(kind, DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise ValueError(f"{kind} takes a list, {kind}: {DISTRIBUTIONS[kind].split(':')[0]}; got {args!r}")
    return kind, args


def largest(spec) -> typing.Any:
    """The largest value a discrete distribution can draw (sizes resources and ASHA's max_t)."""
    kind, args = distribution(spec)
    return args[1] - 1 if kind == "randint" else max(args)


def is_grid(spec) -> bool:
    return isinstance(spec, dict) and "grid" in spec


def _domain(key: str, spec, base: dict):
    stage, name = split_key(key)
    try:
        kind, args = distribution(spec)
        values = _range(kind, args) if kind in ("uniform", "loguniform", "randint") else args
    except ValueError as err:
        raise DulError(f"sweep.space.{key}: {err}") from None
    for value in values:
        try:
            parse_section(stage, {**base, name: value})
        except DulError as err:
            raise DulError(f"sweep.space.{key}: {kind} value {value!r} is not a valid {key}: {err}") from None
    if kind == "grid":
        return tune.grid_search(args)
    if kind == "choice":
        return tune.choice(args)
    return getattr(tune, kind)(*args)


def _range(kind: str, args: list) -> list:
    """The values a range can reach, to be checked against the stage's dataclass."""
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise ValueError(f"{kind} takes two numbers, {kind}: [low, high]; got {args!r}")
    low, high = args
    if not low < high:
        raise ValueError(f"{kind} needs low < high; got {args!r}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"loguniform needs low > 0; got {args!r}")
    if kind == "randint":
        if not all(isinstance(a, int) for a in args):
            raise ValueError(f"randint takes two integers; got {args!r}")
        return [low, high - 1]  # Tune's randint excludes high
    return [float(low), float(high)]  # floats: an int param swept by uniform is an error here


def _kinds() -> str:
    return ", ".join(f"{{{kind}: {text.split(':')[0]}}}" for kind, text in DISTRIBUTIONS.items())
