"""The paper's fine-tuning optimisers (CG, L-BFGS on batches) and the random-init baseline."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from components.models.autoencoder import DeepAutoencoder
from components.models.rbm import BernoulliRBM
from components.models.autoencoder import reconstruction_losses
from components.training.batch_methods import minimize_batch
from components.training.finetune import initial_model, make_optimizer, train_epoch
from components.training.pretrain import layer_state


def _data(n=200, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, d, generator=g) > 0.5).float()
    return prototypes[torch.randint(0, 4, (n,), generator=g)]


def _model(seed=0):
    torch.manual_seed(seed)
    return DeepAutoencoder([12, 8, 3])


@pytest.mark.parametrize("method", ["cg", "lbfgs"])
def test_a_batch_method_lowers_the_batch_loss(method):
    model, x = _model(), _data()
    before = reconstruction_losses(model(x), x)["loss"].item()
    minimize_batch(model, x, method, line_searches=3)
    after = reconstruction_losses(model(x), x)["loss"].item()
    assert after < 0.9 * before


@pytest.mark.parametrize("method", ["cg", "lbfgs"])
def test_more_line_searches_go_further(method):
    x = _data()
    losses = []
    for line_searches in (1, 10):
        model = _model()
        minimize_batch(model, x, method, line_searches=line_searches)
        losses.append(reconstruction_losses(model(x), x)["loss"].item())
    assert losses[1] < losses[0]


def test_epochs_of_cg_train_the_autoencoder():
    model, x = _model(), _data(n=400)
    params = {"optimizer": "cg"}
    assert make_optimizer(model, params) is None
    first = train_epoch(model, None, x, batch_size=100, n_batches=4, generator=torch.Generator().manual_seed(0),
                        method="cg", line_searches=3)
    for epoch in range(5):
        last = train_epoch(model, None, x, batch_size=100, n_batches=4,
                           generator=torch.Generator().manual_seed(epoch + 1), method="cg", line_searches=3)
    assert last["train_loss"] < 0.5 * first["train_loss"]


def _stack(sizes=(12, 8, 3), seed=0):
    torch.manual_seed(seed)
    return {"layers": [layer_state(BernoulliRBM(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]}


def test_random_init_keeps_the_architecture_and_drops_the_weights():
    stack = _stack()
    pretrained = initial_model(stack, {"init": "pretrained", "seed": 0})
    random = initial_model(stack, {"init": "random", "seed": 0})
    again = initial_model(stack, {"init": "random", "seed": 0})
    assert random.sizes == pretrained.sizes and random.code_units == pretrained.code_units
    assert not torch.equal(random.encoder[0].weight, pretrained.encoder[0].weight)
    assert torch.equal(random.encoder[0].weight, again.encoder[0].weight)  # seeded: reproducible
    assert torch.equal(pretrained.encoder[0].weight, stack["layers"][0]["W"].T)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, method, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = torch.nn.parallel.DistributedDataParallel(_model())
    x = _data(seed=rank + 1)  # each worker its own shard
    minimize_batch(model, x, method, line_searches=3, world_size=world)
    out[rank] = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("method", ["cg", "lbfgs"])
def test_data_parallel_workers_stay_in_lockstep(method):
    """Different shards, averaged loss and gradient: both workers end on identical weights."""
    with mp.get_context("spawn").Manager() as manager:  # not fork: a forked child breaks the session Ray's gRPC
        out = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), method, out), nprocs=2, join=True)
        assert torch.equal(out[0], out[1])
        assert not torch.equal(out[0], torch.cat([p.detach().reshape(-1) for p in _model().parameters()]))
