"""The sample scores' maths (components/evaluation/sample_scores.py) against closed forms and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from components.errors import DulError
from components.evaluation.sample_scores import (
    density_coverage,
    frechet_distance,
    kernel_distance,
    parzen_log_likelihood,
    parzen_window,
    precision_recall,
)


def test_frechet_distance_of_an_affine_copy_is_its_closed_form():
    """fake = 2 real + 1: C_f = 4 C_r, sqrt(C_r C_f) = 2 C_r, so the distance is |mu_r + 1|^2 + Tr(C_r)."""
    real = np.random.default_rng(0).standard_normal((500, 4)) @ np.diag([1.0, 2.0, 0.5, 1.5])
    fake = 2 * real + 1
    expected = ((real.mean(0) + 1) ** 2).sum() + np.trace(np.cov(real, rowvar=False))
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)
    assert abs(frechet_distance(real, real)) < 1e-6
    few = np.random.default_rng(5).random((5, 10))  # fewer items than features: singular covariances
    assert abs(frechet_distance(few, few)) < 1e-6 and frechet_distance(few, few + 1) == pytest.approx(10, rel=1e-6)


def test_kernel_distance_is_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2000, 8)), rng.standard_normal((2000, 8))
    same, spread = kernel_distance(a, b, subsets=20, subset_size=500)
    assert abs(same) < 3 * spread / math.sqrt(20) + 1e-3
    shifted, _ = kernel_distance(a, b + 0.5, subsets=20, subset_size=500)
    assert shifted > 0.05 and shifted > 10 * abs(same)


def test_precision_and_recall_tell_mode_collapse_from_junk():
    rng = np.random.default_rng(2)
    real = np.concatenate([rng.normal(-5, 1, (300, 2)), rng.normal(5, 1, (300, 2))])
    collapsed = rng.normal(-5, 1, (300, 2))  # one of the two modes: precise, half the recall
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.9 and 0.3 < recall < 0.7
    assert precision_recall(real, rng.normal(50, 1, (300, 2))) == (0.0, 0.0)
    assert precision_recall(real, real) == (1.0, 1.0)


def test_density_and_coverage_of_the_real_items_themselves_and_of_a_collapsed_set():
    rng = np.random.default_rng(6)
    real = np.concatenate([rng.normal(-5, 1, (300, 2)), rng.normal(5, 1, (300, 2))])
    # each real item lies in its own ball and in the balls of the k items it is among the k nearest of:
    # sum over balls of (k + 1) members, so density is exactly (k + 1) / k
    assert density_coverage(real, real, k=5) == pytest.approx((6 / 5, 1.0))
    density, coverage = density_coverage(real, rng.normal(-5, 1, (600, 2)))
    assert 0.8 < density < 1.6 and 0.4 < coverage < 0.55  # one mode of two: half the real balls hold a sample
    assert density_coverage(real, rng.normal(50, 1, (300, 2))) == (0.0, 0.0)


def test_one_real_outlier_vouches_for_junk_in_precision_but_not_in_density():
    """Naeem et al.'s case: a real outlier's k-NN ball is wide enough to hold samples nowhere near the data."""
    rng = np.random.default_rng(7)
    real = np.concatenate([rng.normal(0, 1, (500, 2)), [[40.0, 40.0]]])
    junk = rng.normal(20, 1, (500, 2))  # between the data and the outlier, inside only the outlier's ball
    precision, _ = precision_recall(real, junk)
    density, coverage = density_coverage(real, junk)
    assert precision == 1.0
    assert density == pytest.approx(1 / 5) and coverage == pytest.approx(1 / len(real))


def test_parzen_log_likelihood_is_the_mixture_density():
    rng = np.random.default_rng(3)
    samples, items, sigma = rng.random((5, 3)), rng.random((4, 3)), 0.3
    expected = [np.log(np.mean([multivariate_normal(s, sigma ** 2 * np.eye(3)).pdf(x) for s in samples]))
                for x in items]
    assert parzen_log_likelihood(samples, items, sigma) == pytest.approx(expected)
    chosen = parzen_window(samples, items, items, sigmas=(0.01, sigma, 10.0))
    assert chosen["parzen_sigma"] == sigma and chosen["parzen_ll"] == pytest.approx(np.mean(expected))


def test_too_few_or_mismatched_items_are_one_line():
    with pytest.raises(DulError, match="same d"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(DulError, match="at least 4 items"):
        precision_recall(np.zeros((3, 2)), np.zeros((9, 2)))
    with pytest.raises(DulError, match="at least 6 items"):
        density_coverage(np.zeros((9, 2)), np.zeros((5, 2)))
