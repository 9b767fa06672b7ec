"""VAE, IWAE and NASH against brute force on tiny models: log p(x) by quadrature
over a 1-d latent, the KL and expected reconstruction of NASH by enumerating
its codes; short training runs on synthetic data; checkpoints, params and
capabilities."""

import itertools
import math

import pytest
import torch

from components.errors import DulError
from components.models import registry
from components.models.nn import gaussian_latent as vae_module
from components.models.base import Density, Encoder, LatentModel, Model, Reconstructor, Sampler
from components.models.iwae import IWAE
from components.models.nash import NASH, straight_through
from components.models.vae import VAE

BITS = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))  # every x in {0, 1}^3, (8, 3)
GRID = torch.linspace(-8, 8, 4001, dtype=torch.float64)  # z for the quadrature


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(likelihood: str, cls=VAE, **kw) -> VAE:
    """D = 3, L = 1, a decoder scaled up so that p(x | z) depends strongly on z."""
    torch.manual_seed(0)
    model = cls(3, 1, (4,), likelihood, **kw)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(2)
        if likelihood == "gaussian":
            model.log_var_x.fill_(math.log(0.3))
    return model


def data_for(likelihood: str) -> torch.Tensor:
    return BITS if likelihood == "bernoulli" else 0.8 * torch.randn(6, 3, generator=torch.Generator().manual_seed(1))


def by_hand(model: VAE, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """log p(x | z) from the decoder's output ``out`` = f(z), written out, summed over D."""
    if model.likelihood == "bernoulli":
        return (x * torch.sigmoid(out).log() + (1 - x) * torch.sigmoid(-out).log()).sum(-1)
    s = model.log_var_x.detach().to(out.dtype)
    return (-0.5 * (math.log(2 * math.pi) + s + (x - out) ** 2 / s.exp())).sum(-1)


@torch.no_grad()
def log_likelihood_on_grid(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z), (G, B) for z on GRID, in float64."""
    return by_hand(model, x.double(), model.decoder(GRID[:, None, None].float()).double())  # out (G, 1, D)


def trapezoid_weights() -> torch.Tensor:
    """The trapezoid rule's weights on GRID, (G,)."""
    weights = torch.full_like(GRID, float(GRID[1] - GRID[0]))
    weights[[0, -1]] /= 2
    return weights


def trapezoid_log(log_f: torch.Tensor) -> torch.Tensor:
    """log of the trapezoid rule's integral over GRID of exp(log_f), (G, B) -> (B,)."""
    return torch.logsumexp(log_f + trapezoid_weights().log()[:, None], 0)


def exact_log_p(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log int p(x | z) N(z; 0, 1) dz, (B,)."""
    log_prior = -0.5 * (math.log(2 * math.pi) + GRID**2)  # (G,)
    return trapezoid_log(log_likelihood_on_grid(model, x) + log_prior[:, None])


@torch.no_grad()
def exact_elbo(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """E_q[log p(x | z)] - KL(q || p) with the expectation by quadrature, (B,)."""
    mu, log_var = (t.double()[:, 0] for t in model.posterior(x))
    log_q = -0.5 * (math.log(2 * math.pi) + log_var + (GRID[:, None] - mu) ** 2 / log_var.exp())  # (G, B)
    expected = (trapezoid_weights()[:, None] * log_q.exp() * log_likelihood_on_grid(model, x)).sum(0)
    kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var)
    return expected - kl


def repeated(model: VAE, x: torch.Tensor, samples: int, repeats: int) -> torch.Tensor:
    """log_prob(x, samples) for ``repeats`` independent draws, (repeats, B), float64."""
    torch.manual_seed(1)
    return torch.stack([model.log_prob(x, samples) for _ in range(repeats)]).double()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_importance_sampling_and_elbo_match_quadrature(likelihood, monkeypatch):
    model, x = tiny(likelihood), data_for(likelihood)
    exact = exact_log_p(model, x)
    if likelihood == "bernoulli":  # the quadrature itself: p sums to 1 over {0, 1}^3
        assert abs(float(exact.exp().sum()) - 1) < 1e-6
    monkeypatch.setattr(vae_module, "CHUNK_ELEMENTS", 4096)  # force many chunks: 20000 draws in chunks of 341
    widest = []
    model.decoder.register_forward_hook(lambda module, inputs, output: widest.append(output.numel()))
    torch.manual_seed(0)
    estimate = model.log_prob(x, samples=20000).double()
    assert len(widest) == math.ceil(20000 / model.chunk_size(len(x))) > 50 and max(widest) <= 4096
    assert (estimate - exact).abs().max() < 0.05 and (estimate - exact).abs().mean() < 0.02
    elbo, true_elbo = repeated(model, x, 1, 2000), exact_elbo(model, x)
    standard_error = elbo.std(0) / math.sqrt(len(elbo))
    assert ((elbo.mean(0) - true_elbo).abs() < 4 * standard_error + 1e-3).all()  # the ELBO's value, not only its sign
    assert (true_elbo < exact).all() and (exact - true_elbo).mean() > 0.15  # a bound, with a gap the IS closes


def test_importance_sampling_rises_with_k():
    model, x = tiny("bernoulli"), BITS
    exact = float(exact_log_p(model, x).mean())
    means, errors = [], []
    for k in (1, 10, 100):
        draws = repeated(model, x, k, 400).mean(1)  # batch means, (400,)
        means.append(float(draws.mean()))
        errors.append(float(draws.std()) / math.sqrt(len(draws)))
    assert means[1] - means[0] > 4 * math.hypot(errors[0], errors[1])
    assert means[2] - means[1] > 4 * math.hypot(errors[1], errors[2]) and means[2] <= exact + 3 * errors[2]
    assert model.estimator(1) == "elbo" and model.estimator(5000) == "is-5000"


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_one_sample_is_the_analytic_kl_elbo_of_one_draw(likelihood):
    model, x = tiny(likelihood), data_for(likelihood)
    torch.manual_seed(2)
    log_p = model.log_prob(x, samples=1)
    torch.manual_seed(2)
    with torch.no_grad():
        mu, log_var = model.posterior(x)
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
        out = model.decoder(z)
    kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(1)
    assert torch.allclose(log_p, by_hand(model, x, out) - kl, atol=1e-5)


def test_iwae_bound_is_the_elbo_at_k1_and_tighter_at_k50():
    vae, x = tiny("bernoulli"), BITS
    iwae1 = tiny("bernoulli", IWAE, k=1)
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), iwae1.state_dict().values()))
    torch.manual_seed(3)
    expected = vae.loss(x)
    torch.manual_seed(3)
    assert torch.equal(iwae1.loss(x)["loss"], expected["loss"]) and torch.equal(expected["loss"], -expected["elbo"])
    iwae50 = tiny("bernoulli", IWAE, k=50)
    torch.manual_seed(4)
    bounds = torch.stack([-iwae50.loss(x)["loss"].detach() for _ in range(300)]).double()
    elbo, exact = repeated(vae, x, 1, 300).mean(1), float(exact_log_p(vae, x).mean())
    same_estimator = repeated(iwae50, x, 50, 300).mean(1)  # log_prob(samples=50): the same L_50
    assert bounds.mean() > elbo.mean() + 0.1 and bounds.mean() <= exact + 3 * bounds.std() / math.sqrt(300)
    spread = math.hypot(bounds.std(), same_estimator.std()) / math.sqrt(300)
    assert abs(bounds.mean() - same_estimator.mean()) < 4 * spread


def prototypes(n: int, generator: torch.Generator) -> torch.Tensor:
    """Four 8-pixel patterns with 5% of the pixels flipped: entropy log 4 + 8 H(0.05) = 2.97 nats."""
    patterns = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1],
                             [1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1, 0, 1]], dtype=torch.float32)
    x = patterns[torch.randint(0, 4, (n,), generator=generator)]
    return (x + (torch.rand(n, 8, generator=generator) < 0.05).float()) % 2


def test_training_raises_test_log_likelihood_and_iwae_is_not_worse():
    generator = torch.Generator().manual_seed(0)
    train, test = prototypes(512, generator), prototypes(256, generator)
    entropy = math.log(4) - 8 * (0.05 * math.log(0.05) + 0.95 * math.log(0.95))
    results = {}
    for cls, kw in ((VAE, {}), (IWAE, {"k": 5})):
        torch.manual_seed(0)
        model = cls(8, 2, (32,), "bernoulli", **kw)
        torch.manual_seed(1)
        before = float(model.log_prob(test, 200).mean())
        optimizers = model.optimizers(cls.Params(lr=0.01))
        for _ in range(300):
            figures = model.training_step(train[torch.randint(0, 512, (64,))], optimizers)
        assert set(figures) == {"loss", "elbo", "kl"} and not figures["loss"].requires_grad
        torch.manual_seed(1)
        results[cls.family] = float(model.log_prob(test, 200).mean())
        assert before < -5.0 and results[cls.family] > before + 2.0
        assert -entropy - 0.5 < results[cls.family] < -entropy + 0.25  # near, and not above, the data's entropy
    assert results["iwae"] > results["vae"] - 0.1


def topic_documents(n: int, generator: torch.Generator, topics: int = 2, per_topic: int = 10,
                    background: int = 40, length: int = 40, share: float = 0.2):
    """Counts (n, V) and topics (n,): 20% of each document's words from its topic's
    own 10 words, the rest from 40 background words every topic shares."""
    V = topics * per_topic + background
    topic = torch.randint(0, topics, (n,), generator=generator)
    probs = torch.full((n, V), (1 - share) / background)
    probs[:, : topics * per_topic] = 0
    for t in range(topics):
        probs[topic == t, t * per_topic:(t + 1) * per_topic] = share / per_topic
    words = torch.multinomial(probs, length, replacement=True, generator=generator)
    return torch.zeros(n, V).scatter_add_(1, words, torch.ones(n, length)), topic


def hamming_neighbour_accuracy(model: NASH, train, train_topics, test, test_topics) -> float:
    with torch.no_grad():
        q_train, q_test = model.encode(train), model.encode(test)
    medians = q_train.median(0).values  # what the index does
    distances = ((q_test > medians)[:, None, :] != (q_train > medians)[None]).sum(-1)  # (test, train)
    return float((train_topics[distances.argmin(1)] == test_topics).float().mean())


def test_nash_straight_through_bits_are_bernoulli_and_pass_gradients():
    q = torch.tensor([0.05, 0.3, 0.5, 0.9], requires_grad=True)
    torch.manual_seed(0)
    z = straight_through(q.expand(20000, 4))
    assert set(z.detach().unique().tolist()) == {0.0, 1.0}
    tolerance = 4 * (q * (1 - q) / 20000).sqrt()
    assert ((z.detach().mean(0) - q.detach()).abs() < tolerance.detach()).all()
    (z * torch.arange(1.0, 5.0)).sum().backward()
    assert torch.allclose(q.grad, 20000 * torch.arange(1.0, 5.0))  # dz/dq = I


def test_nash_kl_and_reconstruction_match_enumeration_of_codes():
    torch.manual_seed(0)
    model = NASH(6, 3, 8, 0.0, "log")
    x = torch.tensor([[3.0, 0, 1, 0, 2, 0], [0, 1, 0, 4, 0, 1]])
    q = model.encode(x).detach().double()  # (2, 3)
    codes = BITS.double()  # all 8 codes of 3 bits
    log_q = (codes * q[:, None].log() + (1 - codes) * (1 - q[:, None]).log()).sum(-1)  # (2, 8)
    kl = (log_q.exp() * (log_q + 3 * math.log(2))).sum(1).mean()
    with torch.no_grad():
        log_p = torch.log_softmax(model.decoder(BITS), dim=1).double()  # (8, 6)
    reconstruction = (log_q.exp() * -(x.double() @ log_p.T)).sum(1).mean()
    torch.manual_seed(1)
    with torch.no_grad():
        draws = [model.loss(x) for _ in range(3000)]
    assert all(abs(float(d["kl"]) - float(kl)) < 1e-5 for d in draws[:3]) and float(kl) > 0.01
    mc = torch.tensor([float(d["reconstruction"]) for d in draws], dtype=torch.float64)
    assert abs(float(mc.mean()) - float(reconstruction)) < 4 * float(mc.std()) / math.sqrt(len(mc))
    assert all(torch.allclose(d["loss"], d["reconstruction"] + d["kl"]) for d in draws[:3])


def test_nash_inputs_and_idf():
    counts = torch.tensor([[2.0, 0, 1], [0, 0, 3], [1, 1, 0], [0, 0, 1]])
    model = NASH(3, 4, 5, 0.1, "tfidf")
    assert torch.equal(model.idf, torch.ones(3))  # not fitted: idf = 1, unit-length term frequencies
    assert torch.allclose(model.encoder_inputs(counts[:1]), torch.tensor([[2.0, 0, 1]]) / math.sqrt(5))
    model.fit_inputs(counts)
    expected = torch.tensor([math.log(5 / 3) + 1, math.log(5 / 2) + 1, math.log(5 / 4) + 1])
    assert torch.allclose(model.idf, expected)
    weighted = counts * expected
    assert torch.allclose(model.encoder_inputs(counts), weighted / weighted.norm(dim=1, keepdim=True))
    assert torch.allclose(NASH(3, 4, 5, 0.1, "log").encoder_inputs(counts), torch.log1p(counts))
    q = model.encode(counts)
    assert q.shape == (4, 4) and bool(((q >= 0) & (q <= 1)).all())
    with pytest.raises(DulError, match=r"fit_inputs needs counts of shape \(N, 3\)"):
        model.fit_inputs(torch.ones(4, 5))


@pytest.mark.parametrize("kind", ["tfidf", "log"])
def test_nash_codes_separate_topics_after_training(kind):
    generator = torch.Generator().manual_seed(0)
    (train, train_topics), (test, test_topics) = topic_documents(400, generator), topic_documents(200, generator)
    torch.manual_seed(0)
    model = NASH(train.shape[1], 8, 32, 0.1, kind).fit_inputs(train)
    before = hamming_neighbour_accuracy(model, train, train_topics, test, test_topics)
    optimizers = model.optimizers(NASH.Params(lr=3e-3))
    first = model.training_step(train[:64], optimizers)
    for _ in range(300):
        figures = model.training_step(train[torch.randint(0, 400, (64,))], optimizers)
    assert set(figures) == {"loss", "reconstruction", "kl"} and figures["loss"] < first["loss"] - 5
    assert before < 0.85 < 0.9 < hamming_neighbour_accuracy(model, train, train_topics, test, test_topics)


def built(family: str):
    """A small model of ``family`` and inputs for it (a NASH with a fitted idf)."""
    torch.manual_seed(0)
    if family == "nash":
        counts = torch.poisson(torch.full((5, 12), 2.0))
        return NASH.from_params(NASH.Params(bits=6, hidden=10), (12,)).fit_inputs(counts), counts
    cls = registry.family_class(family)
    model = cls.from_params(cls.Params(latent=3, hidden=(7, 5), likelihood="gaussian", **(
        {"k": 4} if family == "iwae" else {})), (1, 3, 4))
    return model, torch.rand(5, 1, 3, 4)


@pytest.mark.parametrize("family", ["vae", "iwae", "nash"])
def test_checkpoint_reproduces_the_model_and_a_wrong_shape_is_one_line(family, tmp_path):
    model, x = built(family)
    torch.save(model.to_checkpoint(), tmp_path / "model.pt")
    loaded = registry.load(tmp_path / "model.pt")  # torch.load(weights_only=True), then from_checkpoint
    again = type(model).from_checkpoint(torch.load(tmp_path / "model.pt", weights_only=True))
    assert type(loaded) is type(model) and loaded.hyperparameters == model.hyperparameters
    for other in (loaded, again):
        assert torch.equal(other.encode(x), model.encode(x))
        torch.manual_seed(5)
        expected = model.loss(x)["loss"]
        torch.manual_seed(5)
        assert torch.equal(other.loss(x)["loss"], expected)
        if family != "nash":
            torch.manual_seed(6)
            expected = model.log_prob(x, 7)
            torch.manual_seed(6)
            assert torch.equal(other.log_prob(x, 7), expected)
            assert torch.equal(other.sample(4, torch.Generator().manual_seed(1)),
                               model.sample(4, torch.Generator().manual_seed(1)))
    checkpoint = model.to_checkpoint()
    checkpoint["state_dict"] = dict(checkpoint["state_dict"], **{"decoder.weight" if family == "nash"
                                                                  else "decoder.0.weight": torch.zeros(2, 2)})
    missing = model.to_checkpoint()
    del missing["state_dict"]["encoder.0.bias"]
    for broken, reason in ((checkpoint, "size mismatch"), (missing, "Missing key")):
        with pytest.raises(RuntimeError, match=reason):
            type(model).from_checkpoint(broken)
        with pytest.raises(DulError, match=f"the {family} checkpoint does not match its params") as failure:
            registry.load(broken)
        assert "\n" not in str(failure.value)


def test_capabilities_samples_and_reconstructions():
    (vae, x), iwae, (nash, counts) = built("vae"), built("iwae")[0], built("nash")
    for model in (vae, iwae):
        assert all(isinstance(model, p) for p in (Model, Encoder, Density, Sampler, Reconstructor, LatentModel))
        assert (model.code_units, model.n_inputs, model.code_size) == ("linear", 12, 3)
    assert all(isinstance(nash, p) for p in (Model, Encoder, Reconstructor))
    assert not isinstance(nash, Density) and not isinstance(nash, Sampler)
    assert (nash.code_units, nash.n_inputs, nash.code_size) == ("binary", 12, 6)
    assert [vae.family, iwae.family, nash.family] == ["vae", "iwae", "nash"]
    assert iwae.hyperparameters == {"n_inputs": 12, "latent": 3, "hidden": [7, 5], "likelihood": "gaussian", "k": 4}
    assert torch.equal(vae.reconstruct(x), vae.decoder(vae.encode(x)))  # gaussian: the mean f(mu(x))
    bernoulli = VAE(12, 3, (5,), "bernoulli")
    assert torch.equal(bernoulli.reconstruct(x), torch.sigmoid(bernoulli.decoder(bernoulli.encode(x))))
    for model in (iwae, bernoulli):
        first = model.sample(50, torch.Generator().manual_seed(2))
        assert first.shape == (50, 12) and torch.equal(first, model.sample(50, torch.Generator().manual_seed(2)))
        assert not torch.equal(first, model.sample(50, torch.Generator().manual_seed(3)))
    assert 0 < float(first.min()) and float(first.max()) < 1  # bernoulli: probabilities
    assert vae.encode(x).shape == (5, 3)
    expected = counts.sum(1, keepdim=True) * torch.softmax(nash.decoder(nash.encode(counts)), 1)
    assert torch.allclose(nash.reconstruct(counts), expected) and torch.allclose(expected.sum(1), counts.sum(1))


@pytest.mark.parametrize("cls, values, message", [
    (VAE, {"latent": 0}, "vae.latent is 0: must be positive"),
    (VAE, {"hidden": (8, 0)}, r"vae.hidden is \[8, 0\]: every width must be positive"),
    (VAE, {"likelihood": "poisson"}, "vae.likelihood is 'poisson'; choose one of: bernoulli, gaussian"),
    (VAE, {"lr": 0.0}, "vae.lr is 0.0: must be positive"),
    (IWAE, {"k": 0}, "iwae.k is 0: must be positive"),
    (IWAE, {"latent": -1}, "iwae.latent is -1"),
    (IWAE, {"likelihood": "gauss"}, "iwae.likelihood is 'gauss'; did you mean 'gaussian'"),
    (NASH, {"input": "bow"}, "nash.input is 'bow'; choose one of: tfidf, log"),
    (NASH, {"bits": 0}, "nash.bits is 0: must be positive"),
    (NASH, {"noise": -0.1}, "nash.noise is -0.1: must be 0 or more"),
    (NASH, {"batch_size": 0}, "nash.batch_size is 0"),
])
def test_params_name_the_bad_key(cls, values, message):
    cls.Params().validate()
    with pytest.raises(DulError, match=message):
        cls.Params(**values).validate()


def test_params_parse_from_a_params_section():
    from components.config import parse_dataclass

    params = parse_dataclass(IWAE.Params, "iwae", {"hidden": [20, 10], "k": 5, "epochs": 3})
    assert params.hidden == (20, 10) and params.k == 5 and params.latent == 8 and params.batch_size == 100
    assert IWAE.from_params(params, (784,)).hyperparameters["k"] == 5
    with pytest.raises(DulError, match="iwae.ltent: unknown key; did you mean 'latent'"):
        parse_dataclass(IWAE.Params, "iwae", {"ltent": 5})


@pytest.mark.parametrize("family", ["vae", "iwae", "nash"])
def test_every_tensor_follows_the_parameters_device(family):
    """On the meta device a tensor created on the CPU by mistake fails the operation."""
    model, x = built(family)
    model.to("meta")
    x = x.to("meta")
    assert model.training_step(x, model.optimizers(type(model).Params()))["loss"].device.type == "meta"
    assert model.encode(x).device.type == model.reconstruct(x).device.type == "meta"
    if family == "nash":
        model.fit_inputs(x)
    else:
        assert model.log_prob(x, 1).device.type == model.log_prob(x, 9).device.type == "meta"
        assert model.sample(3).device.type == model.sample(3, torch.Generator().manual_seed(0)).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mnist_sized_is_5000_fits_in_a_gigabyte_on_gpu():
    model = VAE(784, 50, (200, 200), "bernoulli").cuda()
    x = (torch.rand(100, 784, device="cuda") < 0.3).float()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    log_p = model.log_prob(x, 5000)
    assert log_p.shape == (100,) and bool(torch.isfinite(log_p).all())
    assert torch.cuda.max_memory_allocated() - start < 1 << 30
    assert model.sample(4, torch.Generator().manual_seed(0)).device.type == "cuda"


def test_vdsh_inputs_kl_and_warmup():
    """VDSH (Chaidaroon & Fang 2017): TF-IDF log(1 + tf) log(1 + N / df), the Gaussian KL in closed
    form against torch.distributions, the reconstruction as the multinomial log-likelihood, the KL
    weight rising over kl_warmup epochs, and the code is the posterior mean."""
    from torch.distributions import Normal, kl_divergence

    from components.models.vdsh import VDSH

    torch.manual_seed(0)
    counts = torch.tensor([[2.0, 0, 1], [0, 3, 1], [1, 1, 0], [0, 0, 4]])
    model = VDSH(3, bits=2, hidden=5, kl_warmup=4).fit_inputs(counts)
    df = torch.tensor([2.0, 2, 3])
    assert torch.allclose(model.idf, torch.log1p(4 / df))
    assert torch.allclose(model.tfidf(counts), torch.log1p(counts) * torch.log1p(4 / df))
    mu, log_var = model.posterior(counts)
    expected_kl = kl_divergence(Normal(mu, torch.exp(0.5 * log_var)), Normal(0.0, 1.0)).sum(1).mean()
    torch.manual_seed(1)
    figures = model.loss(counts)
    assert torch.allclose(figures["kl"], expected_kl, atol=1e-6)
    torch.manual_seed(1)
    z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
    log_p = torch.log_softmax(model.decoder(z), dim=1)
    assert torch.allclose(figures["reconstruction"], -(counts * log_p).sum(1).mean(), atol=1e-6)
    weights = []
    for epoch in range(6):
        model.start_epoch(epoch)
        weights.append(float(model.beta))
    assert weights == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert torch.allclose(figures["loss"], figures["reconstruction"] + 0.0 * figures["kl"])  # beta 0 before epoch 1
    assert torch.equal(model.encode(counts), mu)
    assert VDSH(3, 2, 5).beta == 1.0  # no warm-up: the full KL from the start
