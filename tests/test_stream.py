"""Streaming splits (components.data.stream): the reader yields the in-memory
path's rows, shards and shuffles reproducibly, and the training loops train
on it (layer k > 1 through the layers below, batch by batch)."""

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from components.config import parse_section
from components.data import ingest, read_split
from components.data.bow_stream import write_bow_stream
from components.data.stream import (
    ParquetBatches,
    TensorBatches,
    open_split,
    should_stream,
)
from components.errors import DulError
from components.io import save_torch
from components.models.autoencoder import DeepAutoencoder
from components.training import finetune, pretrain
from components.training.finetune import finetune_autoencoder
from components.training.pretrain import pretrain_stack

WORDS = [f"w{i:02d}" for i in range(30)]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits") / "prepared"
    ingest("digits", folder)
    return folder


@pytest.fixture(scope="module")
def images(digits, tmp_path_factory) -> Path:
    """The digits train split cut to 1200 rows in row groups of 100 (ingest writes one group)."""
    folder = tmp_path_factory.mktemp("images")
    pq.write_table(pq.read_table(digits / "train.parquet").slice(0, 1200), folder / "train.parquet", row_group_size=100)
    return folder


@pytest.fixture(scope="module")
def bow(tmp_path_factory) -> Path:
    """A generated bag-of-words corpus, 30 words, two topics; train 1000 documents in row groups of 96."""
    rng = np.random.default_rng(0)
    topics = rng.dirichlet(np.full(len(WORDS), 0.3), size=2)
    sizes = {"train": 1000, "validation": 200}

    def records(splits):
        for split in sorted(splits & set(sizes)):
            for i in range(sizes[split]):
                label = i % 2
                tokens = rng.choice(WORDS, size=int(rng.integers(5, 40)), p=topics[label]).tolist()
                yield split, (f"{split}/{i}", label, "", tokens)

    folder = tmp_path_factory.mktemp("bow") / "prepared"
    write_bow_stream(folder, records, label_names=["a", "b"], splits=("train", "validation"), row_group_size=96)
    return folder


def rows(batches) -> Counter:
    return Counter(row.tobytes() for batch in batches for row in batch.numpy())


def streamed_epoch(folder, batch_size, rank, world, seed=0, **options) -> list[torch.Tensor]:
    reader = ParquetBatches(folder / "train.parquet", batch_size, rank=rank, world=world, **options)
    return list(reader.epoch(torch.Generator().manual_seed(seed)))


def group_rows(folder, groups) -> Counter:
    """The rows of the given row groups of a split, as the in-memory path reads them."""
    X, _ = read_split(folder, "train")
    sizes = [pq.ParquetFile(folder / "train.parquet").metadata.row_group(g).num_rows
             for g in range(pq.ParquetFile(folder / "train.parquet").num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return rows([torch.from_numpy(X[starts[g]:starts[g + 1]]) for g in groups])


@pytest.mark.parametrize("split", ["images", "bow"])
def test_each_worker_streams_its_own_row_groups_only(split, request):
    """Sharded by row groups: worker r reads groups r, r + world, ...; together, every row once."""
    folder = request.getfixturevalue(split)
    X, _ = read_split(folder, "train")
    n_groups = pq.ParquetFile(folder / "train.parquet").num_row_groups  # 12 of 100 / 11 of 96 (one short)
    batch_size = 50 if split == "images" else 8  # divides every shard and the whole split
    seen = Counter()
    for rank in (0, 1):
        reader = ParquetBatches(folder / "train.parquet", batch_size, rank=rank, world=2, buffer_rows=250)
        assert reader.groups == list(range(rank, n_groups, 2))
        batches = list(reader.epoch(torch.Generator().manual_seed(0)))
        assert {tuple(b.shape) for b in batches} == {(batch_size, X.shape[1])}
        assert not rows(batches) - group_rows(folder, reader.groups)  # only its own groups' rows
        everything = list(reader.sequential(batch_size))
        assert rows(everything) == group_rows(folder, reader.groups)
        seen += rows(everything)
    assert seen == rows([torch.from_numpy(X)])
    assert rows(streamed_epoch(folder, batch_size, 0, 1)) == rows([torch.from_numpy(X)])


def test_every_worker_runs_the_same_number_of_batches(bow):
    sizes = [pq.ParquetFile(bow / "train.parquet").metadata.row_group(g).num_rows for g in range(11)]
    for world, batch_size in ((2, 64), (3, 100), (4, 30)):
        counts = {len(streamed_epoch(bow, batch_size, rank, world, buffer_rows=100)) for rank in range(world)}
        smallest = min(sum(sizes[r::world]) for r in range(world))
        assert counts == {smallest // batch_size}


def test_fewer_row_groups_than_workers_gives_each_every_world_th_row(digits):
    X, _ = read_split(digits, "train")  # one row group
    batches = streamed_epoch(digits, 64, 1, 2)
    assert len(batches) == len(X) // 2 // 64 and not rows(batches) - rows([torch.from_numpy(X[1::2])])


def test_in_memory_shards_read_the_same_rows_as_streaming(images):
    for rank in (0, 1):
        memory = open_split(images, "train", batch_size=50, streaming=False, rank=rank, world=2)
        stream = open_split(images, "train", batch_size=50, streaming=True, rank=rank, world=2)
        assert memory.n_batches == stream.n_batches == 12
        assert rows(memory.sequential(50)) == rows(stream.sequential(50))


def test_the_order_is_a_function_of_the_seed(bow):
    first, again = streamed_epoch(bow, 100, 0, 1, seed=7), streamed_epoch(bow, 100, 0, 1, seed=7)
    other = streamed_epoch(bow, 100, 0, 1, seed=8)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(torch.cat(first), torch.cat(other)) and rows(first) == rows(other)


def test_rows_mix_across_row_groups(images):
    # row groups of 100: a batch drawn from a shuffle buffer of several groups holds rows of several
    X, _ = read_split(images, "train")
    position = {row.tobytes(): i for i, row in enumerate(X)}
    batch = streamed_epoch(images, 50, 0, 1, buffer_rows=400)[0]
    assert len({position[row.tobytes()] // 100 for row in batch.numpy()}) >= 3


def test_memory_is_a_window_not_the_split(bow):
    reader = ParquetBatches(bow / "train.parquet", 100, buffer_rows=200)
    windows = [w.shape[0] for w in reader._windows(torch.Generator().manual_seed(0))]
    assert sum(windows) == 1000 and max(windows) < 200 + 96  # at most one row group past the buffer


def test_sequential_reads_the_split_in_order(bow):
    X, _ = read_split(bow, "validation")
    streamed = open_split(bow, "validation", batch_size=64, streaming=True)
    chunks = list(streamed.sequential(64))
    assert [len(c) for c in chunks] == [64, 64, 64, 8]
    np.testing.assert_array_equal(torch.cat(chunks).numpy(), X)
    np.testing.assert_array_equal(streamed.first().numpy(), X[:64])


def test_in_memory_batches_are_the_permutation_the_loops_always_drew(images):
    X, _ = read_split(images, "train")
    data = torch.from_numpy(X)
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(3))
    drawn = list(TensorBatches(data, 100, 12).epoch(torch.Generator().manual_seed(3)))
    assert all(torch.equal(batch, data[order[b * 100:(b + 1) * 100]]) for b, batch in enumerate(drawn))


def test_an_unreadable_split_is_a_dulerror_naming_it(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DulError, match=r"train\.parquet is not a readable dul split"):
        open_split(tmp_path, "train", batch_size=10, streaming=True)
    with pytest.raises(DulError, match=r"train\.parquet is not a readable dul split"):
        should_stream("auto", tmp_path, ["train"])


def test_too_large_a_batch_names_the_param(bow):
    with pytest.raises(DulError, match=r"finetune\.batch_size 600 is larger than a worker's share"):
        open_split(bow, "train", batch_size=600, streaming=True, world=2, stage="finetune")


def test_auto_streams_splits_over_the_budget(bow):
    dense = 1200 * len(WORDS) * 4  # train + validation as float32
    assert should_stream("auto", bow, ["train", "validation"], budget=dense - 1)
    assert not should_stream("auto", bow, ["train", "validation"], budget=dense)
    assert should_stream(True, bow, ["train"], budget=1 << 40) and not should_stream(False, bow, ["train"], budget=0)


@pytest.mark.parametrize("section", ["pretrain", "finetune"])
def test_the_stream_param_is_checked(section):
    for value in ("auto", True, False):
        assert parse_section(section, {"stream": value}).stream == value
    with pytest.raises(DulError, match=rf"{section}\.stream is 'atuo'; did you mean 'auto'\? choose one of: auto, true, false"):
        parse_section(section, {"stream": "atuo"})
    with pytest.raises(DulError, match=rf"{section}\.stream: expected bool or str, got 1"):
        parse_section(section, {"stream": 1})


def test_streamed_layers_and_finetuning_train_on_word_counts(bow, one_thread):
    params = {"hidden": [16, 8], "code_units": "binary", "init_std": 0.01, "lr": 0.1, "lr_code": 0.001,
              "lr_layers": [0.01, 0.1], "weight_decay": 0.0002, "momentum_initial": 0.5, "visible_units": "poisson"}
    batches = open_split(bow, "train", batch_size=50, streaming=True, buffer_rows=200)
    in_memory = open_split(bow, "train", batch_size=50, streaming=False)
    rbms = []
    for index in range(2):
        torch.manual_seed(index)
        rbm = pretrain.build_layer(index, len(WORDS) if index == 0 else 16, params)
        optimizer = pretrain.make_optimizer(rbm, index, params)
        first = batches.first()
        chain = rbm.v_sample(first.clone(), rbm.context(first))  # persistent CD from the first batch
        sparsity = {"target": 0.1, "cost": 0.1, "q": None}
        errors = [pretrain.train_epoch(rbm, optimizer, batches, cd_k=1, generator=torch.Generator().manual_seed(e),
                                       chain=chain, sparsity=sparsity)["recon_error"] for e in range(6)]
        assert all(np.isfinite(errors)) and errors[-1] < errors[0], errors
        rbms.append(rbm)
        batches, in_memory = batches.through(rbm.h_mean), in_memory.through(rbm.h_mean)
    # layer 3's data, computed per batch on the way up, is the in-memory matrix of hidden probabilities
    torch.testing.assert_close(torch.cat(list(batches.sequential(128))), in_memory.data)

    net = DeepAutoencoder.from_rbms(rbms)
    train = open_split(bow, "train", batch_size=50, streaming=True)
    valid = open_split(bow, "validation", batch_size=50, streaming=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.003)
    before = finetune.squared_error(net, valid)
    assert before == pytest.approx(finetune.squared_error(net, torch.from_numpy(read_split(bow, "validation")[0])))
    losses = [finetune.train_epoch(net, optimizer, train, generator=torch.Generator().manual_seed(e),
                                   input_units=net.input_units)["train_loss"] for e in range(4)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert finetune.squared_error(net, valid) < before


@pytest.mark.ray
def test_stream_true_trains_the_digits_stack_and_autoencoder(digits, workdir, ray_instance):
    settings = {"hidden": [24, 6], "epochs": 2, "max_failures": 0, "cpus_per_worker": 1, "stream": True}
    stack = pretrain_stack(digits, parse_section("pretrain", {**settings, "num_workers": 2}), key="stream")
    assert [(row["layer"], row["epoch"]) for row in stack["history"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert [tuple(layer["W"].shape) for layer in stack["layers"]] == [(64, 24), (24, 6)]
    assert all(0 < row["recon_error"] < 64 for row in stack["history"])
    save_torch(workdir / "stack.pt", {"layers": stack["layers"]})
    tuned = finetune_autoencoder(digits, workdir / "stack.pt", parse_section("finetune", {
        "epochs": 2, "max_failures": 0, "cpus_per_worker": 1, "stream": True}), key="stream")
    errors = [row["valid_squared_error"] for row in tuned["history"]]
    assert len(errors) == 2 and 0 < errors[-1] < errors[0] < 64
