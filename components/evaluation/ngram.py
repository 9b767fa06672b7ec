"""An n-gram baseline for byte streams: interpolated modified Kneser-Ney.

Chen & Goodman (1999), "An empirical study of smoothing techniques for
language modeling", section 3 (interpolated Kneser-Ney, with three
discounts per order: "modified"). For an order-n model over a vocabulary of
V = 256 bytes, h the n-1 bytes before w and h' = h without its oldest byte:

    p_k(w | h) = (max(c_k(hw) - D_k(c_k(hw)), 0) + gamma_k(h) p_{k-1}(w | h')) / sum_v c_k(hv)
    gamma_k(h) = D_k1 N_1(h .) + D_k2 N_2(h .) + D_k3+ N_3+(h .)
    p_0(w) = 1 / V

where N_r(h .) counts the bytes v with c_k(hv) = r (3+: at least 3), and a
context never seen (sum_v c_k(hv) = 0) passes p_{k-1} on unchanged. The
highest order counts occurrences; every lower order counts *continuations*,
c_k(hw) = N_1+(. hw), the distinct bytes seen before hw (Kneser-Ney's point:
a lower order is consulted when the longer context is rare, so it should
rate w by how many contexts it completes, not how often it occurs). The
discounts come from each order's count-of-counts n_1..n_4, Y = n_1 / (n_1 + 2 n_2):

    D_1 = 1 - 2Y n_2 / n_1,  D_2 = 2 - 3Y n_3 / n_2,  D_3+ = 3 - 4Y n_4 / n_3

(each clipped to [0.1, r]: at most r keeps p a distribution, at least 0.1 keeps every
byte possible where the estimates fail, e.g. a context whose bytes were all seen 3+ times
and n_4 > n_3 would otherwise give gamma 0). Because sum_w of the
discounted counts is the context's total less gamma_k(h), p_k sums to 1 over
the V bytes for any context.

A stream's history before its first byte is ``END`` bytes (the end of an
earlier post), for counting as for scoring. n-grams are keys of one uint64
(the oldest byte most significant), so orders go up to 8; all counting is
numpy sorting, about a second per order per 10 M bytes.
"""

from __future__ import annotations

import math

import numpy as np

from components.errors import DulError

V = 256  # bytes
MAX_ORDER = 8  # an 8-gram is one uint64 key
END = 0  # the history before a stream's first byte (components.data.chars.END)
MIN_DISCOUNT = 0.1  # the least discount: every byte keeps some probability in every context


def gram_keys(stream: np.ndarray, k: int) -> np.ndarray:
    """uint64 (L,): the k-gram ending at each byte of ``stream`` (history padded with END)."""
    stream = np.asarray(stream, dtype=np.uint8)
    padded = np.concatenate([np.full(k - 1, END, np.uint8), stream]).astype(np.uint64)
    key = np.zeros(len(stream), dtype=np.uint64)
    for j in range(k):  # oldest byte first: key = sum_j b_j 256^(k-1-j)
        key = (key << np.uint64(8)) | padded[j:j + len(stream)]
    return key


def count_grams(stream: np.ndarray, max_order: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per order k = 1..max_order: the distinct k-grams of ``stream`` (sorted uint64 keys) and
    their counts, one k-gram per byte."""
    _check_order(max_order)
    if not len(stream):
        raise DulError("the n-gram model's training stream is empty")
    return [tuple(np.unique(gram_keys(stream, k), return_counts=True)) for k in range(1, max_order + 1)]


def discounts(counts: np.ndarray) -> np.ndarray:
    """(D_1, D_2, D_3+) from the count-of-counts of ``counts`` (Chen & Goodman's estimates),
    each clipped to [MIN_DISCOUNT, r]; where a count-of-count is 0, r / 2."""
    n = [int(np.count_nonzero(counts == r)) for r in (1, 2, 3, 4)]
    y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] else 0.0
    out = []
    for r in (1, 2, 3):
        d = r - (r + 1) * y * n[r] / n[r - 1] if n[r - 1] and n[r] else r / 2
        out.append(min(max(d, MIN_DISCOUNT), float(r)))
    return np.array(out)


class Level:
    """One order's table: sorted k-gram keys with their (raw or continuation) counts, and per
    context its total, gamma (the discounted mass) and the discounts."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, d: np.ndarray):
        self.keys, self.counts, self.d = keys, counts.astype(np.float64), np.asarray(d, dtype=np.float64)
        contexts = keys >> np.uint64(8)
        self.contexts, starts = np.unique(contexts, return_index=True)
        self.totals = np.add.reduceat(self.counts, starts)
        bins = [counts == 1, counts == 2, counts >= 3]
        self.gammas = sum(self.d[i] * np.add.reduceat(b.astype(np.float64), starts) for i, b in enumerate(bins))

    def discounted(self, c: np.ndarray) -> np.ndarray:
        d = np.where(c >= 3, self.d[2], np.where(c == 2, self.d[1], np.where(c == 1, self.d[0], 0.0)))
        return np.maximum(c - d, 0.0)


def find(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found): where each query sits in the sorted ``keys``, and whether it is there."""
    if not len(keys):
        return np.zeros(len(query), dtype=np.int64), np.zeros(len(query), dtype=bool)
    i = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return i, keys[i] == query


class KneserNey:
    """An interpolated modified Kneser-Ney model of order ``order`` over bytes (see the module docstring)."""

    def __init__(self, levels: list[Level]):
        self.levels = levels
        self.order = len(levels)

    @classmethod
    def fit(cls, stream: np.ndarray, order: int, fixed_discounts=None,
            grams: list[tuple[np.ndarray, np.ndarray]] | None = None) -> KneserNey:
        """Fit on ``stream`` (uint8). ``grams``: ``count_grams(stream, >= order)`` to reuse;
        ``fixed_discounts``: (D_1, D_2, D_3+) for every order instead of the estimates."""
        _check_order(order)
        grams = grams if grams is not None else count_grams(stream, order)
        levels = []
        for k in range(1, order + 1):
            keys, counts = grams[k - 1]
            if k < order:  # continuation counts: distinct bytes before each k-gram
                longer = grams[k][0]
                keys, counts = np.unique(longer & np.uint64((1 << (8 * k)) - 1), return_counts=True)
            d = discounts(counts) if fixed_discounts is None else np.asarray(fixed_discounts, dtype=np.float64)
            levels.append(Level(keys, counts, d))
        return cls(levels)

    def _probabilities(self, grams: list[np.ndarray]) -> np.ndarray:
        """p(w | h) for queries given as their k-gram keys, k = 1..order."""
        p = np.full(len(grams[0]), 1.0 / V)
        for level, keys in zip(self.levels, grams, strict=True):
            at, seen = find(level.contexts, keys >> np.uint64(8))  # contexts never seen pass p on
            gram, known = find(level.keys, keys)
            c = np.where(known, level.counts[gram], 0.0)
            p = np.where(seen, (level.discounted(c) + level.gammas[at] * p) / np.where(seen, level.totals[at], 1.0), p)
        return p

    def log_probs(self, stream: np.ndarray, chunk: int = 1 << 21) -> np.ndarray:
        """ln p(x_t | the order - 1 bytes before it), float64 (L,), for every byte of ``stream``."""
        stream = np.asarray(stream, dtype=np.uint8)
        out = []
        for start in range(0, len(stream), chunk):
            lo = max(0, start - self.order + 1)  # the history a chunk's first bytes need
            piece = stream[lo:start + chunk]
            grams = [gram_keys(piece, k)[start - lo:] for k in range(1, self.order + 1)]
            out.append(np.log(self._probabilities(grams)))
        return np.concatenate(out) if out else np.zeros(0)

    def probabilities(self, context: bytes | np.ndarray) -> np.ndarray:
        """p(w | context) for all 256 bytes w, float64 (256,); a context shorter than
        order - 1 bytes is padded with END on the left, as at a stream's start."""
        history = np.concatenate([np.full(self.order, END, np.uint8), np.frombuffer(bytes(context), np.uint8)])
        w = np.arange(V, dtype=np.uint64)
        grams = [w]
        for k in range(2, self.order + 1):  # the k - 1 bytes before w, then w
            grams.append((gram_keys(history, k - 1)[-1] << np.uint64(8)) | w)
        return self._probabilities(grams)

    def bits_per_char(self, stream: np.ndarray) -> float:
        return float(-self.log_probs(stream).mean() / math.log(2))


def choose_order(train: np.ndarray, valid: np.ndarray, orders) -> tuple[KneserNey, dict[int, float]]:
    """The order of ``orders`` whose model (fitted on ``train``) has the fewest bits per
    character on ``valid``; that model and every order's validation figure."""
    grams = count_grams(train, max(orders))
    figures, best = {}, None
    for order in orders:
        model = KneserNey.fit(train, order, grams=grams)
        figures[order] = model.bits_per_char(valid)
        if best is None or figures[order] < figures[best.order]:
            best = model
    return best, figures


def _check_order(order: int) -> None:
    if not 1 <= order <= MAX_ORDER:
        raise DulError(f"n-gram order {order}: use 1 to {MAX_ORDER} (an {MAX_ORDER}-gram fills a 64-bit key)")
