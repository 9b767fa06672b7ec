"""Typed, strict views of ``params.yaml``: one frozen dataclass per stage.

``params.yaml`` is the single source of truth. Every stage reads only its own
top-level section, and every key is checked: an unknown or misspelled key, a
wrong type or an impossible value is a ``DulError`` that names the key
(``pretrain.hiden: unknown key; did you mean 'hidden'?``), never a silent
default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path

from components.errors import DulError, did_you_mean
from components.params_file import MAX_PARAMS_BYTES, read_yaml  # noqa: F401 (MAX_PARAMS_BYTES re-exported)

PARAMS_FILE = "params.yaml"
VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")  # a zoo variant's name: a stage, file and section name


@dataclasses.dataclass(frozen=True)
class RayParams:
    """Where a training stage runs: shared by every Ray Train stage."""

    num_workers: int = 1  # data-parallel training workers
    cpus_per_worker: int = 2  # CPU cores each worker claims (and its torch threads)
    use_gpu: bool = False  # one GPU per worker when true
    max_failures: int = 2  # worker crashes survived by restarting from the last checkpoint


@dataclasses.dataclass(frozen=True)
class IngestParams:
    """Where the data comes from and how it is split (stage ingest, data/prepared)."""

    dataset: str = "digits"  # images: digits (scikit-learn's bundled 1,797), mnist, fashion-mnist, binarized-mnist
    # (Larochelle & Murray's fixed draw), cifar10, cifar100 (32x32 RGB); word counts: 20newsgroups (bydate split),
    # reuters21578 (ModApte), rcv1-v2 (LYRL2004 tokens, streamed; multi-label)
    source: str | None = None  # null: canonical URLs; or a local folder / file / mirror URL. Every file is checked
    # against a pinned hash and cached (~/.cache/dul, or $DUL_CACHE). 20newsgroups, cifar10, cifar100, reuters21578:
    # the archive, its folder or a mirror URL (reuters21578 also a folder of reut2-NNN.sgm files); rcv1-v2: a folder
    # or base URL with the five lyrl2004_tokens_*.dat.gz files and rcv1-v2.topics.qrels.gz. The pins are sha256,
    # except reuters21578.tar.gz (its published md5) and the LYRL2004 token files (none published: verified: false)
    validation_fraction: float = 0.1  # share of the training set held out for validation (later stages choose on it)
    test_fraction: float = 0.2  # digits only: share of all images for the test set (the others have an official one)
    vocabulary_size: int = 2000  # text corpora: the N most frequent training words (the semantic-hashing papers' 2000)
    remove: tuple[str, ...] = ()  # 20newsgroups only: any of headers, footers, quotes (scikit-learn's remove=);
    # the headers name the newsgroup, so retrieval with them left in is trivial
    topics: str = "all"  # reuters21578: all (90 ModApte topics, multi-label) | R52 | R8 (single-label)
    rcv1_split: str = "lyrl2004"  # rcv1-v2: lyrl2004 (23,149 / 781,265) | random (seeded halves, 402,207 each)
    protocol: str = "bydate"  # 20newsgroups, reuters21578: bydate (the keys above) | vdsh (the semantic-hashing papers'
    # preparation since VDSH: stop words, 10,000 words, max_df 0.8, min_df 3, documents of 6-500 words, the test split
    # halved into test and validation by seed; 20newsgroups without headers, footers, quotes; reuters21578 the 20 most
    # frequent ModApte topics, unlabelled test documents dropped; vocabulary_size, remove, validation_fraction, topics unused)
    representation: str = "bow"  # text: bow (word counts, the keys above) | chars (20newsgroups, protocol bydate: each
    # post as bytes 0-255, a sequence for wavenet and n-gram models; remove and validation_fraction apply,
    # vocabulary_size does not; components/data/chars.py)
    seed: int = 0  # seed of the split

    def validate(self) -> None:
        _check_positive("ingest", self, ("vocabulary_size",))
        for item in self.remove:
            _check_choice("ingest.remove", item, ("headers", "footers", "quotes"))
        if self.remove and self.dataset != "20newsgroups":
            raise DulError(f"ingest.remove applies to 20newsgroups only, not {self.dataset}; set it to []")
        _check_choice("ingest.topics", self.topics, ("all", "R52", "R8"))
        _check_choice("ingest.rcv1_split", self.rcv1_split, ("lyrl2004", "random"))
        _check_choice("ingest.protocol", self.protocol, ("bydate", "vdsh"))
        if self.protocol == "vdsh" and self.dataset not in ("20newsgroups", "reuters21578"):
            raise DulError(f"ingest.protocol vdsh is the semantic-hashing papers' 20newsgroups and reuters21578 "
                           f"preparation, not {self.dataset}'s; use protocol bydate")
        _check_choice("ingest.representation", self.representation, ("bow", "chars"))
        if self.representation == "chars" and (self.dataset != "20newsgroups" or self.protocol != "bydate"):
            raise DulError(f"ingest.representation chars prepares 20newsgroups (protocol bydate) as byte sequences, "
                           f"not {self.dataset} (protocol {self.protocol}); use representation bow")
        _check_fraction("ingest.validation_fraction", self.validation_fraction)
        if self.validation_fraction == 0:  # every later stage measures on it (and the registry compares by it)
            raise DulError("ingest.validation_fraction is 0: the validation split would be empty, and fine-tuning, "
                           "the kept epoch and the registry's champion are chosen on it; use e.g. 0.1")
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
    epochs: int = 50  # epochs per layer
    batch_size: int = 100  # mini-batch size
    lr: float = 0.1  # learning rate of the binary layers
    lr_code: float = 0.001  # learning rate of a linear code layer
    weight_decay: float = 0.0002  # weight cost, on the weights only
    momentum_initial: float = 0.5  # momentum for the first momentum_switch_epoch epochs
    momentum_final: float = 0.9  # momentum after them
    momentum_switch_epoch: int = 5  # the epoch at which momentum_final takes over
    init_std: float = 0.1  # initial weights: init_std * N(0, 1)
    cd_k: int = 1  # Gibbs steps of contrastive divergence
    matmul_dtype: str = "float32"  # float32 | bfloat16: the precision of CD's matrix products' inputs
    # (activations, gradients and weights stay float32); bfloat16 only where it is fast: CPUs with AVX-512
    # BF16 or AMX, bf16-capable GPUs; refused elsewhere (emulated bf16 was 35x slower on an AVX2 EPYC)
    visible_units: str = "auto"  # first layer: auto (bernoulli images, poisson counts) | bernoulli | poisson
    # (constrained Poisson, Semantic Hashing 2009) | softmax (replicated softmax, NIPS 2009) |
    # gaussian (Gaussian-Bernoulli RBM for real values, standardised per feature by the pipeline; it needs
    # layer_model: rbm and a small layer-1 rate in lr_layers, e.g. [0.001, 0.1, 0.1, 0.001])
    layer_model: str = "rbm"  # rbm (a DBN) | autoencoder (stacked tied-weight autoencoders, denoising with noise > 0,
    # trained by the same layer-wise routine and unrolled the same way)
    noise: float = 0.0  # autoencoder layers: fraction of inputs zeroed (masking noise; Vincent et al. 2008)
    persistent: bool = False  # persistent CD (Tieleman 2008) instead of CD-k: the negative chains carry over between
    # batches (they restart from data on a resumed run)
    sparsity_target: float = 0.05  # mean hidden activation aimed at, when sparsity_cost > 0
    sparsity_cost: float = 0.0  # 0: no sparsity penalty (RBM layers: Lee et al. 2008, Hinton's practical guide
    # section 11; autoencoder layers: the KL penalty of a sparse autoencoder, Ng's CS294A notes; never on linear codes)
    lr_layers: tuple[float, ...] = ()  # per-layer learning rates; empty: lr (lr_code for a linear code layer)
    stream: bool | str = "auto"  # auto | true | false: read the split batch by batch (components.data.stream)
    # instead of loading it whole: each worker takes every world-th row, row groups are read in a shuffled order and
    # their rows shuffled in windows of 32,768, so memory is that window, not the corpus; layers above the first get
    # their inputs by passing each batch up through the trained layers. auto streams when the splits as dense float32
    # exceed 1/8 of the machine's RAM
    seed: int = 0  # every epoch's draws are seeded from it, so a resumed run matches an uninterrupted one

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
        _check_not_negative("pretrain", self, ("weight_decay", "momentum_initial", "momentum_final",
                                               "momentum_switch_epoch", "seed"))


@dataclasses.dataclass(frozen=True)
class FinetuneParams(RayParams):
    """Backpropagation through the unrolled deep autoencoder (cross-entropy loss)."""

    epochs: int = 60  # epochs of backpropagation
    batch_size: int = 100  # mini-batch size
    optimizer: str = "adam"  # adam | sgd | cg | lbfgs (cg, lbfgs: the paper's batch methods;
    # cg: nonlinear conjugate gradients (scipy), lbfgs: torch's; the paper used cg, batch_size 1000, 3 line searches)
    lr: float = 0.001  # learning rate (adam and sgd)
    momentum: float = 0.9  # momentum (sgd only)
    line_searches: int = 3  # cg and lbfgs: line searches (iterations) per batch
    init: str = "pretrained"  # pretrained (the unrolled stack) | random (the no-pretraining baseline)
    code_noise: float = 0.0  # std of Gaussian noise on the code layer's inputs (semantic hashing: 4), which makes
    # the codes nearly binary
    keep: str = "last"  # last | best_precision (the epoch whose codes retrieve best; components/training/selection)
    # best_precision scores each epoch (0: the pretrained net) by precision@100 of up to 2,000 validation rows querying
    # up to 10,000 training rows, and reports/finetune/metrics.json names the kept_epoch; semantic hashing wants it
    stream: bool | str = "auto"  # auto | true | false: as pretrain.stream, for the train and validation splits
    seed: int = 0  # as pretrain.seed
    neighbours: int = 0  # word counts only; K > 0 also pulls the code layer's inputs towards Laplacian-eigenmap
    # coordinates of the training documents' K-nearest-neighbour TF-IDF graph (components/retrieval/spectral.py), so
    # neighbouring documents get nearby codes; one worker, the training split in memory; 0: the paper's objective
    neighbour_weight: float = 10.0  # weight of that squared error next to the reconstruction loss
    neighbour_dimensions: int = 0  # eigenvectors the targets come from; 0: one per code bit; fewer: every further
    # bit follows a random rotation of those coordinates (long codes: 32 for 64 or 128 bits, chosen on validation)

    def validate(self) -> None:
        _check_ray(self, "finetune")
        _check_stream(self, "finetune")
        _check_choice("finetune.optimizer", self.optimizer, ("adam", "sgd", "cg", "lbfgs"))
        _check_choice("finetune.init", self.init, ("pretrained", "random"))
        _check_choice("finetune.keep", self.keep, ("last", "best_precision"))
        _check_positive("finetune", self, ("epochs", "batch_size", "lr", "line_searches"))
        _check_not_negative("finetune", self, ("momentum", "code_noise", "seed", "neighbours", "neighbour_weight",
                                                "neighbour_dimensions"))
        if self.neighbours and (self.optimizer in ("cg", "lbfgs") or self.num_workers > 1 or self.stream is True):
            raise DulError(f"finetune.neighbours ({self.neighbours}) trains with adam or sgd on one worker with the "
                           "training split in memory; set finetune.optimizer: adam, finetune.num_workers: 1 and "
                           "finetune.stream: auto, or finetune.neighbours: 0")


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    """Test figures of the fine-tuned autoencoder against PCA (stage evaluate)."""

    n_images: int = 10  # test images shown in the reconstruction figure
    ais_chains: int = 100  # AIS runs for the first RBM's log Z and test log-likelihood; 0: skip. Annealed importance
    # sampling (Salakhutdinov & Murray 2008; 14,500 inverse temperatures), with +-3 sigma bars on log Z, test images
    # binarised at 0.5, when the first layer is a Bernoulli RBM; also its pseudo-log-likelihood

    def validate(self) -> None:
        _check_positive("evaluate", self, ("n_images",))
        if self.ais_chains == 1 or self.ais_chains < 0:
            raise DulError(f"evaluate.ais_chains is {self.ais_chains}: 0 (skip) or at least 2 (for error bars)")


@dataclasses.dataclass(frozen=True)
class IndexParams:
    """The retrieval index: a code for every item, the search folder, precision@k (stage index)."""

    model: str = "models/autoencoder.pt"  # the encoder whose codes are indexed: any family with codes
    k: int = 10  # precision@k: neighbours per query, test items against training items
    max_queries: int = 2000  # test queries for the precision-recall comparison with baselines; 0: all. A seeded
    # sample; the baselines have the codes' size (TF-IDF, LSA, LSH for counts; pixels, PCA, LSH for images)

    def validate(self) -> None:
        _check_positive("index", self, ("k",))
        if not self.model.startswith("models/") or not self.model.endswith(".pt"):
            raise DulError(f"index.model is '{self.model}': a checkpoint under models/, e.g. models/autoencoder.pt "
                           "(the flagship) or models/zoo/nash.pt")
        if self.max_queries < 0:
            raise DulError(f"index.max_queries is {self.max_queries}: must be 0 (all) or more")


@dataclasses.dataclass(frozen=True)
class SweepParams:
    """``dul sweep``: a Ray Tune search over pretrain and finetune params (not a DVC stage).

    ``space`` maps ``stage.param`` to a distribution, plain data such as
    ``{loguniform: [1.0e-4, 1.0e-2]}``; components/training/sweep_space.py
    checks it and turns it into Ray Tune's search space.
    """

    name: str | None = None  # null: named by a hash of the params and the data. The name picks the Ray storage
    # folder ray_results/sweep-NAME and the MLflow parent run "sweep NAME"
    metric: str = "finetune.valid_squared_error"  # stage.metric, reported every epoch: finetune.valid_squared_error,
    # finetune.train_squared_error or finetune.train_loss
    mode: str = "min"  # min | max
    num_samples: int = 8  # trials (with grid keys: repeats of the grid)
    max_concurrent: int = 2  # trials at once (fewer if the CPUs do not fit them)
    scheduler: str = "asha"  # asha (stops poor trials early) | fifo
    grace_period: int = 1  # asha: epochs before a trial can be stopped
    search: str = "optuna"  # optuna (TPE) | random (Tune's random search; grid keys are crossed) |
    # grid (only grid keys)
    seed: int = 0  # seed of the search
    space: dict = dataclasses.field(default_factory=lambda: {"finetune.lr": {"loguniform": [1.0e-4, 1.0e-2]},
                                                             "pretrain.epochs": {"choice": [10, 25, 50]}})
    # stage.param: {distribution: [arguments]} for pretrain and finetune params: uniform or loguniform: [low, high],
    # randint: [low, high] (high excluded), choice or grid: [a, b, ...]

    def validate(self) -> None:
        _check_choice("sweep.mode", self.mode, ("min", "max"))
        _check_choice("sweep.scheduler", self.scheduler, ("asha", "fifo"))
        _check_choice("sweep.search", self.search, ("optuna", "random", "grid"))
        _check_positive("sweep", self, ("num_samples", "max_concurrent", "grace_period"))


@dataclasses.dataclass(frozen=True)
class ZooParams(RayParams):
    """The model zoo: which families ``dvc repro`` trains (one stage each,
    ``train@<family>``, with the family's own params section), on which data
    protocol, and how their test likelihoods are estimated (reports/zoo/)."""

    families: tuple[str, ...] = ()  # the families dvc repro trains (train@<family>), each with its own section
    variants: dict[str, str] = dataclasses.field(default_factory=dict)  # more rows of the reports: name -> family,
    # each trained by its stage variant@<name> with its own section <name>: (that family's keys), e.g.
    # {helmholtz-rws: helmholtz, helmholtz-wake-sleep: helmholtz} for one family under two settings
    binarization: str = "fixed"  # threshold (x > 0.5) | fixed (one seeded draw, Larochelle & Murray) | dynamic
    binarization_seed: int = 0  # the fixed draw (and the validation and test draw under dynamic)
    test_samples: int = 5000  # importance samples per test item for IS estimates (the IWAE paper's k)
    test_items: int = 0  # test items scored (the first ones); 0: all. A sequence family: the first test_items bytes
    # of the test stream
    samples: int = 64  # samples drawn for each family's picture

    def validate(self) -> None:
        _check_ray(self, "zoo")
        _check_choice("zoo.binarization", self.binarization, ("threshold", "fixed", "dynamic"))
        _check_positive("zoo", self, ("test_samples", "samples"))
        _check_not_negative("zoo", self, ("binarization_seed", "test_items"))
        from components.models.registry import ZOO_FAMILIES

        for family in self.families:
            _check_choice("zoo.families", family, ZOO_FAMILIES)
        if len(set(self.families)) != len(self.families):
            raise DulError(f"zoo.families lists a family twice: {list(self.families)}")
        for name, family in self.variants.items():
            _check_choice(f"zoo.variants.{name}", family, ZOO_FAMILIES)
            if name in ZOO_FAMILIES or name in SECTIONS or not VARIANT_NAME.fullmatch(name):
                raise DulError(f"zoo.variants: '{name}' cannot name a variant; use lower-case letters, digits, '-' "
                               f"and '_', not a family's or a section's name (e.g. {family}-2)")

    @property
    def names(self) -> tuple[str, ...]:
        """Every row the zoo trains: the listed families, then the variants."""
        return (*self.families, *self.variants)

    def family_of(self, name: str) -> str:
        """The registry family of a row: a variant's family, or the name itself."""
        return self.variants.get(name, name)


@dataclasses.dataclass(frozen=True)
class FeaturesParams:
    """The feature report (stage features, reports/zoo/features.json): a linear
    probe on the frozen features of every zoo family that encodes, beside raw
    pixels and PCA of the same sizes (components/evaluation/probe.py)."""

    probe_c: tuple[float, ...] = (0.01, 0.1, 1.0)  # inverse L2 strengths of the logistic-regression probe; the one
    # with the best validation accuracy is kept, and only its test accuracy is reported
    max_iter: int = 200  # L-BFGS iterations per C (each C warm-starts from the previous one)
    pca: tuple[int, ...] = ()  # PCA feature sizes probed besides the code sizes of the listed encoders
    flagship: bool = True  # also probe the flagship's features: the RBM stack's top layer (dbn) and the
    # fine-tuned deep autoencoder's code (models/stack.pt, models/autoencoder.pt)
    train_items: int = 0  # training items the probe is fitted on (the first ones); 0: all

    def validate(self) -> None:
        if not self.probe_c or any(c <= 0 for c in self.probe_c):
            raise DulError(f"features.probe_c is {list(self.probe_c)}: one or more positive numbers")
        _check_positive("features", self, ("max_iter",))
        _check_not_negative("features", self, ("train_items",))
        if any(k < 1 for k in self.pca):
            raise DulError(f"features.pca is {list(self.pca)}: feature sizes of 1 or more")


@dataclasses.dataclass(frozen=True)
class ScorerParams:
    """The classifier the sample scores are computed with (stage scorer, models/scorer.pt):
    a small CNN trained on the training split as the zoo sees it (components/evaluation/scorer.py)."""

    epochs: int = 20  # passes over the training split; the epoch with the best validation accuracy is kept
    batch_size: int = 100  # mini-batch size
    lr: float = 0.003  # Adam's learning rate (on digits' validation split: 0.861 against 0.833 at 0.001)
    seed: int = 0  # initial weights and batch order

    def validate(self) -> None:
        _check_positive("scorer", self, ("epochs", "batch_size", "lr"))
        _check_not_negative("scorer", self, ("seed",))


@dataclasses.dataclass(frozen=True)
class SamplesParams:
    """The sample report (stage samples, reports/zoo/samples.json): every zoo row that samples
    images, scored against the test split in the scorer's feature space."""

    n: int = 1000  # samples drawn per family, and test items they are compared with (fewer if the test split is)
    seed: int = 0  # the draws' seed (every family, and the sanity rows)
    kid_subsets: int = 10  # random subsets the kernel distance is averaged over

    def validate(self) -> None:
        _check_positive("samples", self, ("kid_subsets",))
        _check_not_negative("samples", self, ("seed",))
        if self.n < 10:
            raise DulError(f"samples.n is {self.n}: draw at least 10 samples (precision and recall use the 3 nearest "
                           "neighbours; the scores are noisy below a few hundred)")


SECTIONS: dict[str, type] = {
    "ingest": IngestParams,
    "pretrain": PretrainParams,
    "finetune": FinetuneParams,
    "evaluate": EvaluateParams,
    "index": IndexParams,
    "sweep": SweepParams,
    "zoo": ZooParams,
    "features": FeaturesParams,
    "scorer": ScorerParams,
    "samples": SamplesParams,
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
    raw = read_yaml(path)
    raw = raw or {}
    if not isinstance(raw, dict):
        raise DulError(f"{path}: expected a mapping of stage sections at the top level")
    from components.models.registry import ZOO_FAMILIES

    variants = (raw.get("zoo") or {}).get("variants") or {}
    variants = variants if isinstance(variants, dict) else {}  # the zoo section's own check names the problem
    for name in raw:
        if name not in SECTIONS and name not in ZOO_FAMILIES and name not in variants:
            raise DulError(f"{path}: unknown section '{name}'; "
                           f"{did_you_mean(name, [*SECTIONS, *ZOO_FAMILIES, *variants])}")
    listed = (raw.get("zoo") or {}).get("families") or ()
    for name in raw:
        if name in ZOO_FAMILIES and name not in (listed or ()):
            raise DulError(f"{path}: section '{name}' is for a family zoo.families does not list; "
                           f"add {name} to zoo.families or remove the section")
    return raw


def load_family_params(name: str, path: str | Path = PARAMS_FILE):
    """Zoo row ``name``'s params section (defaults for keys it does not set), checked:
    a family's own section, or a variant's (zoo.variants) with its family's keys."""
    from components.models.registry import params_class

    raw = read_params_file(path)
    family = parse_section("zoo", raw.get("zoo") or {}).family_of(name)
    return parse_dataclass(params_class(family), name, raw.get(name) or {})


def parse_section(section: str, values: dict):
    """Build and validate the dataclass for ``section`` from a plain mapping."""
    return parse_dataclass(SECTIONS[section], section, values)


def parse_dataclass(cls: type, section: str, values: dict):
    """Build and validate ``cls`` (a frozen dataclass) from a plain mapping, every
    key checked: unknown keys, wrong types, and NaN or inf where a number is due."""
    if not isinstance(values, dict):
        raise DulError(f"{section}: expected a mapping of keys, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise DulError(f"{section}.{key}: unknown key; {did_you_mean(key, names)}")
    kwargs = {k: _coerce(f"{section}.{k}", v, hints[k]) for k, v in values.items()}
    params = cls(**kwargs)
    if hasattr(params, "validate"):
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
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        if not isinstance(value, dict):
            raise DulError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(f"{key} key", k, key_hint): _coerce(f"{key}.{k}", v, value_hint) for k, v in value.items()}
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise DulError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise DulError(f"{key} is {value}: must be a finite number")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise DulError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _check_not_negative(section: str, params, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(params, name)
        if value < 0:
            raise DulError(f"{section}.{name} is {value}: must be 0 or more")


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
