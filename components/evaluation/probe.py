"""Linear probes: how linearly separable a feature extractor makes the labels.

The lecture's comparison of features (Salakhutdinov's "Deep Unsupervised
Learning", the Caltech-101 table: PCA 37%, sparse coding 47%; Coates, Lee &
Ng, AISTATS 2011, for the protocol): freeze the features, fit a multinomial
logistic regression on the training split only, choose its L2 strength on
the validation split, and report its accuracy on the test split.

    z = (f(x) - mean_train) / std_train          per feature, from the training split
    p(y | z) = softmax(W z + b)                  scikit-learn's LogisticRegression (L-BFGS)
    C* = argmax_C  accuracy_valid(C)             ties: the smaller C (the stronger penalty)
    probe_accuracy = accuracy_test(C*)

scikit-learn's solver rather than one of our own: it is the estimator the
papers' probes use, well tested, and the fit is not where the time goes
(encoding is). The C values are fitted from the strongest penalty up, each
warm-started from the previous solution (the regularisation path), which
needs fewer iterations than fitting each from zero.
"""

from __future__ import annotations

import copy
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from components.errors import DulError


def linear_probe(train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], cs: tuple[float, ...], max_iter: int) -> dict:
    """Fit the probe for every C in ``cs`` on ``train`` (features, labels), keep
    the best on ``valid``, and score it on ``test``.

    Returns ``probe_accuracy`` (test), ``valid_accuracy``, ``c`` (the chosen C),
    ``valid_by_c`` ({C: validation accuracy}), ``converged`` (the chosen fit
    stopped before ``max_iter``) and ``probe_seconds``."""
    (X, y), (Xv, yv), (Xt, yt) = train, valid, test
    for name, (features, labels) in (("training", train), ("validation", valid), ("test", test)):
        if len(features) != len(labels):
            raise DulError(f"linear probe: {len(features)} {name} feature rows but {len(labels)} labels")
        if not np.isfinite(features).all():
            raise DulError(f"linear probe: the {name} features hold NaN or inf; the extractor's model is broken")
    if len(np.unique(y)) < 2:
        raise DulError("linear probe: the training split has fewer than two classes; nothing to separate")
    start = time.perf_counter()
    scaler = StandardScaler().fit(X)
    X, Xv, Xt = scaler.transform(X), scaler.transform(Xv), scaler.transform(Xt)
    probe = LogisticRegression(max_iter=max_iter, warm_start=True)
    best, best_accuracy, by_c = None, -1.0, {}
    for c in sorted(cs):
        probe.set_params(C=c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported as ``converged`` instead
            probe.fit(X, y)
        accuracy = float((probe.predict(Xv) == yv).mean())
        by_c[c] = accuracy
        if accuracy > best_accuracy:
            best, best_accuracy = copy.deepcopy(probe), accuracy
    return {"probe_accuracy": float((best.predict(Xt) == yt).mean()), "valid_accuracy": best_accuracy,
            "c": float(best.C), "valid_by_c": {str(c): a for c, a in by_c.items()},
            "converged": bool(best.n_iter_.max() < max_iter), "probe_seconds": round(time.perf_counter() - start, 1)}
