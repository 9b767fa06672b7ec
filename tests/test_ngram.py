"""Interpolated modified Kneser-Ney over bytes (components/evaluation/ngram.py): a bigram
model of "abab" worked out by hand, distributions that sum to 1 over the 256 bytes for any
context, stream scoring that agrees with one context at a time, and the discounts' formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from components.errors import DulError
from components.evaluation.ngram import KneserNey, choose_order, discounts

A, B = ord("a"), ord("b")


def test_a_bigram_model_of_abab_by_hand():
    """Bigrams with END before the start: (END a) 1, (a b) 2, (b a) 1. Unigram continuation
    counts: a follows END and b (2), b follows a (1); total 3, gamma = D_1 + D_2 = 1.5."""
    model = KneserNey.fit(np.frombuffer(b"abab", np.uint8), 2, fixed_discounts=(0.5, 1.0, 1.5))
    p1 = {A: (2 - 1.0 + 1.5 / 256) / 3, B: (1 - 0.5 + 1.5 / 256) / 3, ord("z"): 1.5 / 256 / 3}
    after_a = model.probabilities(b"a")
    assert after_a[B] == pytest.approx((2 - 1.0 + 1.0 * p1[B]) / 2)  # context a: total 2, gamma D_2 * 1
    assert after_a[A] == pytest.approx(p1[A] / 2)
    assert model.probabilities(b"")[A] == pytest.approx(0.5 + 0.5 * p1[A])  # the context END: (END a) once
    unseen = model.probabilities(b"z")  # never seen as a context: the unigram level as it is
    assert [unseen[w] for w in p1] == pytest.approx(list(p1.values()))


@pytest.mark.parametrize("order", [1, 2, 4])
def test_every_context_has_a_distribution_over_256_bytes(order):
    symbols = np.frombuffer(b"abcde \x00", np.uint8)
    text = np.random.default_rng(0).choice(symbols, 3000, p=[.3, .2, .2, .1, .1, .05, .05])
    model = KneserNey.fit(text, order)
    for context in (b"", b"a", b"ab c", bytes(text[100:110]), b"\xff\xfe\xfd", b"\x00"):
        p = model.probabilities(context)
        assert p.shape == (256,) and (p > 0).all() and p.sum() == pytest.approx(1.0, abs=1e-12)


def test_scoring_a_stream_in_chunks_agrees_with_one_context_at_a_time():
    rng = np.random.default_rng(1)
    train = rng.integers(97, 101, 2000).astype(np.uint8)
    model = KneserNey.fit(train, 3)
    test = rng.integers(96, 101, 50).astype(np.uint8)
    one_by_one = [math.log(model.probabilities(test[:t].tobytes())[test[t]]) for t in range(len(test))]
    assert model.log_probs(test, chunk=7) == pytest.approx(one_by_one, abs=1e-12)
    assert model.bits_per_char(test) == pytest.approx(-np.mean(one_by_one) / math.log(2))


def test_the_discounts_are_chen_and_goodmans():
    counts = np.array([1] * 10 + [2] * 4 + [3] * 2 + [4] * 1 + [9])  # n_1..n_4 = 10, 4, 2, 1
    y = 10 / (10 + 2 * 4)
    assert discounts(counts) == pytest.approx([1 - 2 * y * 4 / 10, 2 - 3 * y * 2 / 4, 3 - 4 * y * 1 / 2])


def test_the_order_is_chosen_on_validation():
    text = np.frombuffer(b"the cat sat on the mat. " * 40, np.uint8)
    model, figures = choose_order(text, text[:200], [1, 2, 3])
    assert list(figures) == [1, 2, 3] and figures[3] < figures[2] < figures[1] and model.order == 3
    with pytest.raises(DulError, match="n-gram order 9: use 1 to 8"):
        KneserNey.fit(text, 9)
