"""Scores of a model's samples against real items, in a classifier's feature space.

"How can we quantitatively evaluate these models?" The field's answers, each
computed on features f(x) of a classifier trained on the dataset's own
training split (components/evaluation/scorer.py), samples S against real
test items R, both (n, d):

- Fréchet distance (Heusel et al. 2017, the FID's formula on our features):
  |mu_R - mu_S|^2 + Tr(C_R + C_S - 2 (C_R C_S)^(1/2)), Gaussians fitted to
  each set. Biased for small n: compare rows of one n only.
- Kernel distance (Bińkowski et al. 2018, KID): the unbiased estimate of
  MMD^2 with the cubic kernel k(a, b) = (a.b / d + 1)^3, averaged over
  ``subsets`` random subsets of both sets (of 1,000 items, or half a set
  if it is smaller, so that the spread over subsets means something);
  unbiased, so it can dip below 0.
- Precision and recall (Kynkäänniemi et al. 2019): a set's manifold is the
  union of balls around its points, each with the radius to its k-th
  nearest neighbour in the set (k = 3); precision is the share of samples
  inside the real manifold, recall the share of real items inside the
  samples' manifold.
- Density and coverage (Naeem et al. 2020), from the real items' balls only
  (k = 5): density is the mean number of real balls a sample falls in,
  divided by k (about 1 for samples like the real items, (k + 1) / k for the
  real items themselves), so one real outlier's wide ball cannot vouch for
  many samples as it does in precision; coverage is the share of real items
  whose ball holds at least one sample, a recall that an average-looking set
  of samples cannot fake by being spread (it covers only the balls near the
  average).
- Parzen-window log-likelihood (Breuleux et al. 2011; Goodfellow et al.
  2014's table) of the real items under an isotropic Gaussian kernel on the
  samples, sigma chosen on validation items. Theis, van den Oord & Bethge
  (2016) show it ranks models unreliably, even against the truth: it is
  here only to set figures beside older papers', and marked so.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from components.errors import DulError

KID_SUBSET = 1000  # items per KID subset (Bińkowski et al.'s 1,000)
NEAREST = 3  # Kynkäänniemi et al.'s k
NEAREST_DC = 5  # Naeem et al.'s k for density and coverage
PARZEN_SIGMAS = tuple(np.geomspace(0.05, 2.0, 12).round(4))  # sigma grid for the Parzen window (pixel units)


def _check(real: np.ndarray, fake: np.ndarray, least: int = 2) -> tuple[np.ndarray, np.ndarray]:
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise DulError(f"sample scores need two (n, d) arrays of the same d, got {real.shape} and {fake.shape}")
    if min(len(real), len(fake)) < least:
        raise DulError(f"sample scores need at least {least} items on each side, got {len(real)} and {len(fake)}; "
                       "draw more samples")
    return real, fake


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """|mu_r - mu_f|^2 + Tr(C_r + C_f - 2 sqrt(C_r C_f)) of Gaussians fitted to (n, d) features."""
    real, fake = _check(real, fake)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    c_r, c_f = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    # Tr sqrt(C_r C_f) = Tr sqrt(C_r^1/2 C_f C_r^1/2): the eigenvalues of a symmetric PSD matrix, stable where
    # the covariances are singular (fewer items than features, or features that never fire)
    w, v = np.linalg.eigh(c_r)
    root_r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root_r @ c_f @ root_r
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(c_r) + np.trace(c_f) - 2 * trace_root)


def kernel_distance(real: np.ndarray, fake: np.ndarray, subsets: int = 10, subset_size: int = KID_SUBSET,
                    seed: int = 0) -> tuple[float, float]:
    """(mean, std over subsets) of the unbiased MMD^2 with the cubic polynomial kernel."""
    real, fake = _check(real, fake, least=4)
    d = real.shape[1]
    m = min(subset_size, len(real) // 2, len(fake) // 2)  # at most half of each set, so that the subsets differ
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x, y = real[rng.choice(len(real), m, replace=False)], fake[rng.choice(len(fake), m, replace=False)]
        k_xx, k_yy, k_xy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = m * (m - 1)
        values.append((k_xx.sum() - np.trace(k_xx)) / off + (k_yy.sum() - np.trace(k_yy)) / off
                      - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def _radii(points: np.ndarray, k: int) -> np.ndarray:
    """Each point's distance to its k-th nearest other point of the set."""
    squared = _squared_distances(points, points)
    np.fill_diagonal(squared, np.inf)
    return np.sqrt(np.partition(squared, k - 1, axis=1)[:, k - 1])


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def _inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int = 1024) -> np.ndarray:
    """Whether each point lies within some centre's ball."""
    found = np.empty(len(points), dtype=bool)
    for start in range(0, len(points), block):
        d = np.sqrt(_squared_distances(points[start:start + block], centres))
        found[start:start + block] = (d <= radii[None, :]).any(axis=1)
    return found


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = NEAREST) -> tuple[float, float]:
    """Kynkäänniemi et al.'s (precision, recall) of ``fake`` against ``real``, features (n, d)."""
    real, fake = _check(real, fake, least=k + 1)
    precision = _inside(fake, real, _radii(real, k)).mean()
    recall = _inside(real, fake, _radii(fake, k)).mean()
    return float(precision), float(recall)


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = NEAREST_DC,
                     block: int = 1024) -> tuple[float, float]:
    """Naeem et al.'s (density, coverage) of ``fake`` against ``real``, features (n, d)."""
    real, fake = _check(real, fake, least=k + 1)
    radii = _radii(real, k)
    balls = 0  # over samples: how many real balls each falls in
    covered = np.zeros(len(real), dtype=bool)
    for start in range(0, len(fake), block):
        inside = np.sqrt(_squared_distances(fake[start:start + block], real)) <= radii[None, :]
        balls += int(inside.sum())
        covered |= inside.any(axis=0)
    return float(balls / (k * len(fake))), float(covered.mean())


def parzen_log_likelihood(samples: np.ndarray, items: np.ndarray, sigma: float, block: int = 256) -> np.ndarray:
    """log (1/n) sum_j N(x; s_j, sigma^2 I) for each item x (m, D), samples (n, D): (m,) nats."""
    samples, items = _check(items, samples, least=1)[::-1]
    n, dims = samples.shape
    out = np.empty(len(items))
    for start in range(0, len(items), block):
        squared = _squared_distances(items[start:start + block], samples)
        out[start:start + block] = logsumexp(-squared / (2 * sigma ** 2), axis=1)
    return out - math.log(n) - dims / 2 * math.log(2 * math.pi * sigma ** 2)


def parzen_window(samples: np.ndarray, valid: np.ndarray, test: np.ndarray,
                  sigmas: tuple[float, ...] = PARZEN_SIGMAS) -> dict[str, float]:
    """sigma chosen by the validation items' mean log-likelihood; the test items' mean and stderr at it."""
    scores = {sigma: float(parzen_log_likelihood(samples, valid, sigma).mean()) for sigma in sigmas}
    sigma = max(scores, key=scores.get)
    test_ll = parzen_log_likelihood(samples, test, sigma)
    return {"parzen_ll": float(test_ll.mean()), "parzen_stderr": float(test_ll.std(ddof=1) / math.sqrt(len(test_ll))),
            "parzen_sigma": float(sigma)}


def score_samples(embed, real_features: np.ndarray, drawn: np.ndarray, valid: np.ndarray, test: np.ndarray,
                  kid_subsets: int = 10, seed: int = 0) -> dict[str, float]:
    """The sample report's row for ``drawn`` (N, D) samples: Fréchet, KID (its std over ``kid_subsets``),
    precision, recall, density and coverage in the features ``embed(x)`` against ``real_features``
    (``embed`` of as many test items), and the Parzen-window figures on ``valid`` and ``test`` items."""
    features = embed(drawn)
    kid, kid_std = kernel_distance(real_features, features, subsets=kid_subsets, seed=seed)
    precision, recall = precision_recall(real_features, features)
    density, coverage = density_coverage(real_features, features)
    return {"frechet": frechet_distance(real_features, features), "kid": kid, "kid_std": kid_std,
            "precision": precision, "recall": recall, "density": density, "coverage": coverage,
            **parzen_window(drawn, valid, test)}


def binary_samples(model, n: int, seed: int = 0) -> np.ndarray:
    """``n`` binary samples (n, D) float32 of a zoo sampler, drawn with a generator seeded ``seed``
    (on the model's device where it samples there); probabilities (a VAE's means) get one
    Bernoulli draw each, seeded alike, so every family is scored on binary images."""
    import torch

    model.eval()
    with torch.no_grad():
        drawn = model.sample(n, torch.Generator().manual_seed(seed)).double().cpu().numpy()
    if not np.isin(drawn, (0.0, 1.0)).all():
        drawn = np.random.default_rng(seed).random(drawn.shape) < np.clip(drawn, 0, 1)
    return drawn.astype(np.float32)
