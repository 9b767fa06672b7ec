"""Typed, strict views of ``params.yaml``: one frozen dataclass per stage.

``params.yaml`` is the single source of truth. Every stage reads only its own
top-level section, and every key is checked: an unknown or misspelled key, a
wrong type or an impossible value is a ``DulError`` that names the key
(``pretrain.hiden: unknown key; did you mean 'hidden'?``), never a silent
default.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import types
import typing
from pathlib import Path

import yaml

from components.errors import DulError, did_you_mean

PARAMS_FILE = "params.yaml"
MAX_PARAMS_BYTES = 1 << 20  # a params file is a few KiB; refuse anything larger before reading it


@dataclasses.dataclass(frozen=True)
class RayParams:
    """Where a training stage runs: shared by every Ray Train stage."""

    num_workers: int = 1  # data-parallel training workers
    cpus_per_worker: int = 2  # CPU cores each worker claims (and its torch threads)
    use_gpu: bool = False  # one GPU per worker when true
    max_failures: int = 2  # worker crashes survived by restarting from the last checkpoint


@dataclasses.dataclass(frozen=True)
class IngestParams:
    # digits | mnist | fashion-mnist | cifar10 | cifar100 | 20newsgroups | reuters21578 | rcv1-v2
    dataset: str = "digits"
    source: str | None = None  # null: canonical URLs; or a local folder / file / mirror URL
    validation_fraction: float = 0.1
    test_fraction: float = 0.2  # digits only: the others have an official test set
    vocabulary_size: int = 2000  # text corpora: the N most frequent training words
    remove: tuple[str, ...] = ()  # 20newsgroups only: any of headers, footers, quotes
    topics: str = "all"  # reuters21578: all (90 ModApte topics, multi-label) | R52 | R8 (single-label)
    rcv1_split: str = "lyrl2004"  # rcv1-v2: lyrl2004 (23,149 / 781,265) | random (seeded halves)
    seed: int = 0

    def validate(self) -> None:
        _check_positive("ingest", self, ("vocabulary_size",))
        for item in self.remove:
            _check_choice("ingest.remove", item, ("headers", "footers", "quotes"))
        if self.remove and self.dataset != "20newsgroups":
            raise DulError(f"ingest.remove applies to 20newsgroups only, not {self.dataset}; set it to []")
        _check_choice("ingest.topics", self.topics, ("all", "R52", "R8"))
        _check_choice("ingest.rcv1_split", self.rcv1_split, ("lyrl2004", "random"))
        _check_fraction("ingest.validation_fraction", self.validation_fraction)
        _check_fraction("ingest.test_fraction", self.test_fraction)


@dataclasses.dataclass(frozen=True)
class PretrainParams(RayParams):
    """Greedy layer-wise RBM pretraining; defaults are Hinton & Salakhutdinov (2006).

    Source of the recipe: the paper's supporting online material and its
    Matlab code (rbm.m, rbmhidlinear.m): mini-batches of 100, learning rate
    0.1 (0.001 for the linear code layer), weight cost 0.0002 on weights
    only, momentum 0.5 for the first 5 epochs then 0.9, weights drawn from
    0.1 * N(0, 1), 50 epochs per layer, each layer trained on the hidden
    probabilities of the one below.
    """

    hidden: tuple[int, ...] = (256, 128, 64, 10)  # hidden sizes, bottom to top; the last is the code
    code_units: str = "linear"  # linear (Gaussian, as in the paper) | binary
    epochs: int = 50
    batch_size: int = 100
    lr: float = 0.1
    lr_code: float = 0.001
    weight_decay: float = 0.0002
    momentum_initial: float = 0.5
    momentum_final: float = 0.9
    momentum_switch_epoch: int = 5
    init_std: float = 0.1
    cd_k: int = 1
    matmul_dtype: str = "float32"  # float32 | bfloat16: precision of CD's matrix products' inputs
    visible_units: str = "auto"  # first layer: auto (bernoulli images, poisson counts) | ... | gaussian (standardised)
    layer_model: str = "rbm"  # rbm | autoencoder (stacked autoencoders; denoising with noise > 0)
    noise: float = 0.0  # autoencoder layers: fraction of inputs zeroed (masking noise)
    persistent: bool = False  # persistent CD (Tieleman 2008) instead of CD-k
    sparsity_target: float = 0.05  # mean hidden activation aimed at, when sparsity_cost > 0
    sparsity_cost: float = 0.0  # 0: no sparsity penalty
    lr_layers: tuple[float, ...] = ()  # per-layer learning rates; empty: lr (lr_code for a linear code layer)
    stream: bool | str = "auto"  # auto | true | false: read the split batch by batch (components.data.stream)
    seed: int = 0

    def validate(self) -> None:
        _check_ray(self, "pretrain")
        _check_stream(self, "pretrain")
        _check_choice("pretrain.matmul_dtype", self.matmul_dtype, ("float32", "bfloat16"))
        _check_choice("pretrain.visible_units", self.visible_units,
                      ("auto", "bernoulli", "gaussian", "softmax", "poisson"))
        _check_choice("pretrain.layer_model", self.layer_model, ("rbm", "autoencoder"))
        if self.visible_units == "gaussian" and self.layer_model != "rbm":
            raise DulError("pretrain.visible_units: gaussian needs RBM layers (autoencoder layers have Bernoulli "
                           "visibles); set pretrain.layer_model: rbm, or visible_units: bernoulli")
        if self.visible_units in ("gaussian", "softmax", "poisson") and self.layer_model == "rbm" \
                and len(self.hidden) == 1 and self.code_units == "linear":
            raise DulError(f"pretrain.visible_units: {self.visible_units} with a single layer would need "
                           "linear hidden units under them, which no RBM here has; add a layer to "
                           "pretrain.hidden or set code_units: binary")
        if not 0 <= self.noise < 1:
            raise DulError(f"pretrain.noise is {self.noise}: must be in [0, 1)")
        if self.noise and self.layer_model != "autoencoder":
            raise DulError("pretrain.noise applies to autoencoder layers; set pretrain.layer_model: autoencoder or noise: 0")
        if self.persistent and self.layer_model != "rbm":
            raise DulError("pretrain.persistent (PCD) applies to RBM layers; set pretrain.layer_model: rbm")
        if not 0 < self.sparsity_target < 1 or self.sparsity_cost < 0:
            raise DulError(f"pretrain.sparsity_target must be in (0, 1) and sparsity_cost >= 0; got "
                           f"{self.sparsity_target}, {self.sparsity_cost}")
        if self.lr_layers and (len(self.lr_layers) != len(self.hidden) or min(self.lr_layers) <= 0):
            raise DulError(f"pretrain.lr_layers needs one positive rate per layer of pretrain.hidden "
                           f"({len(self.hidden)}), got {list(self.lr_layers)}; or [] for lr/lr_code")
        if not self.hidden:
            raise DulError("pretrain.hidden: give at least one layer size, e.g. [256, 128, 10]")
        for i, size in enumerate(self.hidden):
            if size < 1:
                raise DulError(f"pretrain.hidden[{i}] is {size}: every layer needs at least 1 unit")
        _check_choice("pretrain.code_units", self.code_units, ("linear", "binary"))
        _check_positive("pretrain", self, ("epochs", "batch_size", "lr", "lr_code", "init_std", "cd_k"))


@dataclasses.dataclass(frozen=True)
class FinetuneParams(RayParams):
    """Backpropagation through the unrolled deep autoencoder (cross-entropy loss)."""

    epochs: int = 30
    batch_size: int = 100
    optimizer: str = "adam"  # adam | sgd | cg | lbfgs (cg, lbfgs: the paper's batch methods)
    lr: float = 0.001  # adam and sgd
    momentum: float = 0.9  # sgd only
    line_searches: int = 3  # cg and lbfgs: line searches (iterations) per batch
    init: str = "pretrained"  # pretrained (the unrolled stack) | random (the no-pretraining baseline)
    code_noise: float = 0.0  # std of Gaussian noise on the code layer's inputs (semantic hashing: 4)
    keep: str = "last"  # last | best_precision (the epoch whose codes retrieve best; components/training/selection)
    stream: bool | str = "auto"  # auto | true | false: as pretrain.stream, for the train and validation splits
    seed: int = 0

    def validate(self) -> None:
        _check_ray(self, "finetune")
        _check_stream(self, "finetune")
        _check_choice("finetune.optimizer", self.optimizer, ("adam", "sgd", "cg", "lbfgs"))
        _check_choice("finetune.init", self.init, ("pretrained", "random"))
        _check_choice("finetune.keep", self.keep, ("last", "best_precision"))
        _check_positive("finetune", self, ("epochs", "batch_size", "lr", "line_searches"))
        if self.code_noise < 0:
            raise DulError(f"finetune.code_noise is {self.code_noise}: must be 0 or more")


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    n_images: int = 10  # test images shown in the reconstruction figure
    ais_chains: int = 100  # AIS runs for the first RBM's log Z and test log-likelihood; 0: skip

    def validate(self) -> None:
        _check_positive("evaluate", self, ("n_images",))
        if self.ais_chains == 1 or self.ais_chains < 0:
            raise DulError(f"evaluate.ais_chains is {self.ais_chains}: 0 (skip) or at least 2 (for error bars)")


@dataclasses.dataclass(frozen=True)
class IndexParams:
    k: int = 10  # precision@k: neighbours per query, test items against training items
    max_queries: int = 2000  # test queries for the precision-recall comparison with baselines; 0: all

    def validate(self) -> None:
        _check_positive("index", self, ("k",))
        if self.max_queries < 0:
            raise DulError(f"index.max_queries is {self.max_queries}: must be 0 (all) or more")


@dataclasses.dataclass(frozen=True)
class SweepParams:
    """``dul sweep``: a Ray Tune search over pretrain and finetune params (not a DVC stage).

    ``space`` maps ``stage.param`` to a distribution, plain data such as
    ``{loguniform: [1.0e-4, 1.0e-2]}``; components/training/sweep_space.py
    checks it and turns it into Ray Tune's search space.
    """

    name: str | None = None  # null: named by a hash of the params and the data
    metric: str = "finetune.valid_squared_error"  # stage.metric, reported every epoch
    mode: str = "min"  # min | max
    num_samples: int = 8  # trials (with grid keys: repeats of the grid)
    max_concurrent: int = 2  # trials at once (fewer if the CPUs do not fit them)
    scheduler: str = "asha"  # asha (stops poor trials early) | fifo
    grace_period: int = 1  # asha: epochs before a trial can be stopped
    search: str = "optuna"  # optuna | random | grid
    seed: int = 0
    space: dict = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        _check_choice("sweep.mode", self.mode, ("min", "max"))
        _check_choice("sweep.scheduler", self.scheduler, ("asha", "fifo"))
        _check_choice("sweep.search", self.search, ("optuna", "random", "grid"))
        _check_positive("sweep", self, ("num_samples", "max_concurrent", "grace_period"))


SECTIONS: dict[str, type] = {
    "ingest": IngestParams,
    "pretrain": PretrainParams,
    "finetune": FinetuneParams,
    "evaluate": EvaluateParams,
    "index": IndexParams,
    "sweep": SweepParams,
}


def load_params(section: str, path: str | Path = PARAMS_FILE):
    """Read one stage's section of ``params.yaml`` into its frozen dataclass.

    The whole file is checked for unknown sections, so a misspelled section
    name is caught by whichever stage runs first.
    """
    raw = read_params_file(path)
    return parse_section(section, raw.get(section) or {})


def read_params_file(path: str | Path = PARAMS_FILE) -> dict:
    """The whole params file: a mapping of known section names to their values.

    Every problem with the file itself is a one-line DulError naming it: not
    found, a directory or other non-regular file, over ``MAX_PARAMS_BYTES``
    (refused before it is read), not UTF-8 (the byte offset), not valid YAML
    (the line), a key repeated within one mapping, a top level that is not a
    mapping, an unknown section. Values are the sections' validators' business.
    """
    path = Path(path)
    raw = _parse_yaml(_params_text(path), path)
    raw = raw or {}
    if not isinstance(raw, dict):
        raise DulError(f"{path}: expected a mapping of stage sections at the top level")
    for name in raw:
        if name not in SECTIONS:
            raise DulError(f"{path}: unknown section '{name}'; {did_you_mean(name, SECTIONS)}")
    return raw


def _params_text(path: Path) -> str:
    """The text of the params file, refused unless it is a regular UTF-8 file of at most MAX_PARAMS_BYTES."""
    try:
        _check_params_stat(path, path.stat())
        with open(path, "rb") as file:
            data = file.read(MAX_PARAMS_BYTES + 1)
    except FileNotFoundError:
        raise DulError(f"{path}: params file not found (run from the repository root)") from None
    except OSError as err:
        raise DulError(f"{path}: cannot read the params file: {err.strerror or err}") from None
    if len(data) > MAX_PARAMS_BYTES:  # it grew after the check
        raise DulError(f"{path} is over {MAX_PARAMS_BYTES} bytes, too large for a params file; pass params.yaml")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DulError(f"{path}: not UTF-8 text: byte {err.start} (line {line}) is 0x{data[err.start]:02x};"
                       " save the file as UTF-8") from None


def _check_params_stat(path: Path, info: os.stat_result) -> None:
    """Refuse what is no params file before reading it: /dev/zero or a FIFO never ends, a huge file fills memory."""
    if stat.S_ISDIR(info.st_mode):
        raise DulError(f"{path} is a directory, not a params file; pass the params.yaml inside it")
    if not stat.S_ISREG(info.st_mode):
        raise DulError(f"{path} is not a regular file (a device, FIFO or socket); pass a params.yaml file")
    if info.st_size > MAX_PARAMS_BYTES:
        raise DulError(f"{path} is {info.st_size} bytes, too large for a params file"
                       f" (at most {MAX_PARAMS_BYTES}); pass params.yaml")


def _parse_yaml(text: str, path: Path):
    """The YAML document in ``text``; a syntax error or a repeated key is a DulError with its line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DulError(f"{path}: not valid YAML{where}: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise DulError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    except RecursionError:
        raise DulError(f"{path}: not valid YAML: nested too deeply for a params file") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping, at any depth.

    Plain PyYAML keeps the last value silently. A key that overrides one
    merged in with ``<<`` is allowed, as YAML intends.
    """

    def construct_mapping(self, node, deep=False):
        seen: dict = {}  # key -> the node that gave it first
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not key_node:
                line = first.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first on line {line}); keep one",
                    key_node.start_mark)
        return super().construct_mapping(node, deep)


def parse_section(section: str, values: dict):
    """Build and validate the dataclass for ``section`` from a plain mapping."""
    cls = SECTIONS[section]
    if not isinstance(values, dict):
        raise DulError(f"{section}: expected a mapping of keys, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise DulError(f"{section}.{key}: unknown key; {did_you_mean(key, names)}")
    kwargs = {k: _coerce(f"{section}.{k}", v, hints[k]) for k, v in values.items()}
    params = cls(**kwargs)
    params.validate()
    return params


def as_dict(params) -> dict:
    """A dataclass as plain JSON-able data (tuples become lists)."""
    return json_ready(dataclasses.asdict(params))


def json_ready(value):
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def _coerce(key: str, value, hint):
    """Check ``value`` against the field's type; ints are accepted as floats."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        options = [o for o in options if o is not type(None)]
        if len(options) > 1:  # e.g. bool | str: any of them, bools not counted as ints
            if not any(isinstance(value, o) and not (o is int and isinstance(value, bool)) for o in options):
                raise DulError(f"{key}: expected {' or '.join(o.__name__ for o in options)}, got {value!r}")
            return value
        (hint,) = options
        origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise DulError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise DulError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _check_fraction(key: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise DulError(f"{key} is {value}: must be in [0, 1)")


def _check_choice(key: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise DulError(f"{key} is '{value}'; {did_you_mean(value, options)}")


def _check_positive(section: str, params, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(params, name)
        if value <= 0:
            raise DulError(f"{section}.{name} is {value}: must be positive")


def _check_stream(params, section: str) -> None:
    """``stream``: true, false or auto (YAML's true/false arrive as bools)."""
    if not isinstance(params.stream, bool):
        _check_choice(f"{section}.stream", params.stream, ("auto", "true", "false"))


def _check_ray(params: RayParams, section: str) -> None:
    _check_positive(section, params, ("num_workers", "cpus_per_worker"))
    if params.max_failures < 0:
        raise DulError(f"{section}.max_failures is {params.max_failures}: must be 0 or more")


def section_params(section: str, values):
    """``values`` as the section's frozen dataclass: itself if it already is one, or
    a mapping parsed strictly (missing keys take the dataclass defaults, the one
    source of defaults; code never reads params with ``.get(key, default)``)."""
    if isinstance(values, SECTIONS[section]):
        return values
    return parse_section(section, dict(values))
