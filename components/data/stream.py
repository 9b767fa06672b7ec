"""Mini-batches for the training loops, from memory or streamed from a split's Parquet file.

The training loops see one interface, ``Batches``: ``epoch(generator)``
yields this worker's ``n_batches`` dense float32 (B, D) batches in an order
drawn from ``generator``; ``sequential(size)`` yields its rows in storage
order (validation, the first batch of persistent CD's chains);
``through(fn)`` gives the batches of ``fn(x)`` (layer k of a stack trains
on the hidden probabilities of the layers below). Two implementations:

- ``TensorBatches``: the split loaded whole (``read_split``), this worker's
  rows in memory, a random permutation per epoch; ``through`` applies ``fn``
  to all rows at once. What the stages did before streaming existed, draw
  for draw.
- ``ParquetBatches``: the split read a row group at a time with pyarrow
  and densified one batch at a time, so a corpus larger than memory trains.
  Each epoch reads the row groups in a shuffled order and shuffles their
  rows in windows of at least ``buffer_rows`` rows (a bounded shuffle
  buffer): memory is a window of compact rows (uint8 pixels or CSR counts)
  plus one dense batch, whatever the corpus size. ``through`` applies
  ``fn`` to each batch as it is drawn.

With several workers, a split of at least as many row groups as workers is
sharded by row groups: worker r reads only groups g with g mod world = r
(``shard_groups``), so the file is read once in all, not once a worker; a
smaller split (fewer groups than workers) gives each worker every world-th
row instead. Every worker runs the same number of full batches per epoch
(DDP needs the same count on all): the smallest shard's ``rows // batch_size``. The order is a function of the
generator only, so a resumed run seeded as
``runtime.seed_for`` seeds it draws what an uninterrupted one would.

``should_stream(setting, data_dir, splits)`` turns the stages' ``stream``
param (auto | true | false) into a decision: ``auto`` streams when the
splits' dense float32 size exceeds ``memory_budget()``, 1/8 of this
machine's memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse
import torch

from components.data.ingest import _pixel_bytes, _split_path, read_split
from components.data.text import _vocabulary_size, counts_matrix
from components.errors import DulError

BUFFER_ROWS = 32_768  # rows shuffled together: 25 MB of MNIST pixels, ~20 MB of RCV1 counts
BUDGET_FRACTION = 8  # ``auto`` streams splits whose dense float32 size exceeds RAM / 8


class Batches:
    """The batch source of a training loop (see the module docstring)."""

    batch_size: int
    n_batches: int
    device: torch.device

    def epoch(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def sequential(self, size: int) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def first(self) -> torch.Tensor:
        """The first ``batch_size`` rows in storage order, (B, D)."""
        return next(iter(self.sequential(self.batch_size)))

    def through(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batches:
        return MappedBatches(self, fn)


class TensorBatches(Batches):
    """Rows held in memory, ``data`` (N, D); a fresh permutation every epoch."""

    def __init__(self, data: torch.Tensor, batch_size: int, n_batches: int):
        self.data, self.batch_size, self.n_batches, self.device = data, batch_size, n_batches, data.device

    def epoch(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        order = torch.randperm(len(self.data), generator=generator)
        for b in range(self.n_batches):
            yield self.data[order[b * self.batch_size:(b + 1) * self.batch_size]]  # (B, D)

    def sequential(self, size: int) -> Iterator[torch.Tensor]:
        return iter(self.data.split(size))

    def first(self) -> torch.Tensor:
        return self.data[:self.batch_size]

    def through(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TensorBatches:
        with torch.no_grad():
            return TensorBatches(fn(self.data), self.batch_size, self.n_batches)


class MappedBatches(Batches):
    """``fn`` applied to each batch of ``source`` as it is drawn (no gradients)."""

    def __init__(self, source: Batches, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.source, self.fn = source, fn
        self.batch_size, self.n_batches, self.device = source.batch_size, source.n_batches, source.device

    def _map(self, batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        for x in batches:
            with torch.no_grad():
                y = self.fn(x)
            yield y

    def epoch(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        return self._map(self.source.epoch(generator))

    def sequential(self, size: int) -> Iterator[torch.Tensor]:
        return self._map(self.source.sequential(size))


class SplitFile:
    """A split's Parquet file read a row group at a time: rows in compact form
    (uint8 pixels (n, D), or CSR int32 counts (n, V)) and densified to float32."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.file = pq.ParquetFile(self.path)
            schema = self.file.schema_arrow
            if "text" in schema.names:  # byte sequences (components/data/chars.py): not rows of a fixed size
                raise DulError(f"{path} holds byte sequences (ingest.representation: chars), not fixed-size items; "
                               "only a sequence family (wavenet) reads it, or ingest with representation bow")
            self.bow = "counts" in schema.names
            if self.bow:
                self.columns, self.n_features = ["indices", "counts"], _vocabulary_size(schema.metadata or {}, path)
            else:
                pixels = schema.field("pixels").type
                if not pa.types.is_fixed_size_binary(pixels):
                    raise DulError(f"{path}: column 'pixels' is {pixels}, not fixed_size_binary; run ingest again")
                self.columns, self.n_features = ["pixels"], pixels.byte_width
            metadata = self.file.metadata
            self.group_rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        except (pa.ArrowException, OSError, KeyError, ValueError) as error:
            raise DulError(f"{path} is not a readable dul split ({error}); run ingest again") from error
        self.starts = np.concatenate([[0], np.cumsum(self.group_rows, dtype=np.int64)])
        self.n_rows = int(self.starts[-1])

    def dense_bytes(self) -> int:
        """What the split takes as a dense float32 matrix, as ``read_split`` loads it."""
        return self.n_rows * self.n_features * 4

    def rows(self, group: int, rank: int = 0, world: int = 1):
        """Row group ``group``'s rows whose index in the file is rank mod world, compact."""
        try:
            table = self.file.read_row_group(group, columns=self.columns)
        except (pa.ArrowException, OSError) as error:
            raise DulError(f"{self.path}: row group {group} is not readable ({error}); run ingest again") from error
        if self.bow:
            compact = counts_matrix(table, self.n_features, self.path)
        else:
            compact = _pixel_bytes(table.column("pixels").combine_chunks(), self.n_features)
        return compact[(rank - int(self.starts[group])) % world::world]

    def concat(self, chunks: list):
        if len(chunks) == 1:
            return chunks[0]
        return scipy.sparse.vstack(chunks, format="csr") if self.bow else np.concatenate(chunks)

    def dense(self, compact, device: torch.device) -> torch.Tensor:
        """Float32 (n, D) as ``read_split`` gives it: counts, or pixels / 255."""
        if self.bow:
            x = compact.toarray().astype(np.float32)
        else:
            x = compact.astype(np.float32)
            x /= np.float32(255)
        return torch.from_numpy(x).to(device)


def shard_groups(group_rows: list[int], rank: int, world: int) -> tuple[list[int], int] | None:
    """Worker ``rank``'s row groups and the rows of the smallest shard, or None when
    there are fewer groups than workers (then each takes every world-th row)."""
    if len(group_rows) < world:
        return None
    shards = [list(range(r, len(group_rows), world)) for r in range(world)]
    return shards[rank], min(sum(group_rows[g] for g in shard) for shard in shards)


class ParquetBatches(Batches):
    """This worker's rows of a split, streamed from its Parquet file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, batch_size: int, *, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu", buffer_rows: int = BUFFER_ROWS):
        self.split = SplitFile(path)
        self.batch_size, self.rank, self.world = batch_size, rank, world
        sharded = shard_groups(self.split.group_rows, rank, world)
        if sharded is None:  # each group's every world-th row
            self.groups, self.stride = list(range(len(self.split.group_rows))), (rank, world)
            self.n_batches = batch_count(self.split.n_rows, batch_size, world)
        else:  # whole groups of this worker's shard
            self.groups, self.stride = sharded[0], (0, 1)
            self.n_batches = sharded[1] // batch_size
        self.device, self.buffer_rows = torch.device(device), max(buffer_rows, batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        carry, count = None, 0
        for window in self._windows(generator):
            block = window if carry is None else self.split.concat([carry, window])
            n_full = min(block.shape[0] // self.batch_size, self.n_batches - count)
            for b in range(n_full):
                yield self.split.dense(block[b * self.batch_size:(b + 1) * self.batch_size], self.device)
            count += n_full
            if count == self.n_batches:
                return
            carry = block[n_full * self.batch_size:]

    def _windows(self, generator: torch.Generator) -> Iterator:
        """The row groups in a shuffled order, this worker's rows of each, in shuffled
        windows of at least ``buffer_rows`` rows (the last may be smaller)."""
        pending, size = [], 0
        for index in torch.randperm(len(self.groups), generator=generator).tolist():
            pending.append(self.split.rows(self.groups[index], *self.stride))
            size += pending[-1].shape[0]
            if size >= self.buffer_rows:
                yield self._shuffled(pending, generator)
                pending, size = [], 0
        if pending:
            yield self._shuffled(pending, generator)

    def _shuffled(self, chunks: list, generator: torch.Generator):
        block = self.split.concat(chunks)
        return block[torch.randperm(block.shape[0], generator=generator).numpy()]

    def sequential(self, size: int) -> Iterator[torch.Tensor]:
        """This worker's rows in file order, ``size`` at a time (the last chunk may be smaller)."""
        carry = None
        for group in self.groups:
            rows = self.split.rows(group, *self.stride)
            block = rows if carry is None else self.split.concat([carry, rows])
            n_full = block.shape[0] // size
            for b in range(n_full):
                yield self.split.dense(block[b * size:(b + 1) * size], self.device)
            carry = block[n_full * size:]
        if carry is not None and carry.shape[0]:
            yield self.split.dense(carry, self.device)


def batch_count(n_rows: int, batch_size: int, world: int, stage: str | None = None) -> int:
    """Full batches every worker runs per epoch: n_rows // world // batch_size.
    With ``stage``, none at all is an error naming ``<stage>.batch_size``."""
    n_batches = n_rows // world // batch_size
    if stage is not None and n_batches == 0:
        raise DulError(f"{stage}.batch_size {batch_size} is larger than a worker's "
                       f"share of the {n_rows} training items")
    return n_batches


def open_split(data_dir: str | os.PathLike, split: str, *, batch_size: int, streaming: bool, rank: int = 0,
               world: int = 1, device: torch.device | str = "cpu", stage: str | None = None,
               buffer_rows: int = BUFFER_ROWS) -> Batches:
    """This worker's batches of ``split``, streamed or in memory. With ``stage``
    (the training split) a worker with no full batch is an error naming it."""
    if streaming:
        batches = ParquetBatches(_split_path(data_dir, split), batch_size, rank=rank, world=world, device=device,
                                 buffer_rows=buffer_rows)
        _check_batches(batches.n_batches, batches.split.n_rows, batch_size, world, stage)
        return batches
    if world > 1:
        split_file = SplitFile(_split_path(data_dir, split))
        sharded = shard_groups(split_file.group_rows, rank, world)
        if sharded is not None:  # read this worker's row groups only
            groups, smallest = sharded
            _check_batches(smallest // batch_size, split_file.n_rows, batch_size, world, stage)
            rows = split_file.dense(split_file.concat([split_file.rows(g) for g in groups]), device)
            return TensorBatches(rows, batch_size, smallest // batch_size)
    X, _ = read_split(data_dir, split)
    n_batches = batch_count(len(X), batch_size, world, stage)
    rows = np.ascontiguousarray(X[rank::world])  # a copy of this worker's share (one worker: X itself),
    del X                                         # so the whole split is not kept alive by a strided view
    return TensorBatches(torch.from_numpy(rows).to(device), batch_size, n_batches)


def _check_batches(n_batches: int, n_rows: int, batch_size: int, world: int, stage: str | None) -> None:
    if stage is not None and n_batches == 0:
        raise DulError(f"{stage}.batch_size {batch_size} is larger than a worker's "
                       f"share of the {n_rows} training items")


def as_batches(data: torch.Tensor | Batches, batch_size: int | None, n_batches: int | None) -> Batches:
    """``data`` itself, or a tensor (N, D) as ``TensorBatches`` (the train_epoch functions take either)."""
    if isinstance(data, Batches):
        return data
    return TensorBatches(data, batch_size, n_batches)


def memory_budget() -> int:
    """Bytes a split may take dense before ``auto`` streams it: 1/8 of this machine's
    memory (or of the container's limit), leaving room for each worker's copy,
    its hidden activations and the sparse form it is densified from."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        total = min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        pass
    return total // BUDGET_FRACTION


def should_stream(setting: bool | str, data_dir: str | os.PathLike, splits: Iterable[str],
                  budget: int | None = None) -> bool:
    """The ``stream`` param made concrete: true, false, or ``auto``: whether the
    splits' dense float32 size exceeds ``budget`` (default ``memory_budget()``)."""
    setting = {"true": True, "false": False}.get(setting, setting) if isinstance(setting, str) else setting
    if setting != "auto":
        return bool(setting)
    size = sum(SplitFile(_split_path(data_dir, split)).dense_bytes() for split in splits)
    return size > (memory_budget() if budget is None else budget)


def dense_chunks(path: str | os.PathLike, sizes: Iterable[int],
                 device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """A split's rows in file order, as dense float32 (n, D) tensors of ``sizes`` rows each:
    the slices of ``read_split``'s X, bit for bit, without ever holding it. Rows are read a
    row group at a time (compact) and densified one chunk at a time; ``sizes`` may stop
    before the end of the split, not run past it (a DulError naming the file)."""
    split, device = SplitFile(path), torch.device(device)
    groups = iter(range(len(split.group_rows)))
    pending, held = [], 0
    for size in sizes:
        while held < size:
            group = next(groups, None)
            if group is None:
                raise DulError(f"{path}: asked for more rows than its {split.n_rows}")
            pending.append(split.rows(group))
            held += pending[-1].shape[0]
        if size == 0:
            yield torch.zeros((0, split.n_features), dtype=torch.float32, device=device)
            continue
        block = split.concat(pending)
        if split.bow:  # float32 counts densified directly: no int32 dense copy on the way
            yield torch.from_numpy(block[:size].astype(np.float32).toarray()).to(device)
        else:
            yield split.dense(block[:size], device)
        pending, held = [block[size:]], held - size


def chunk_sizes(n_rows: int, size: int) -> list[int]:
    """``size`` rows at a time, the last chunk smaller: ``range(0, n_rows, size)``'s slices."""
    return [size] * (n_rows // size) + ([n_rows % size] if n_rows % size else [])
