"""Measurements of trained networks (NumPy float64, no torch): exact binomial intervals for f_mem, the
Fréchet distance in the feature space of a small digits classifier (a "digits FID"), and the read-off of
tau_gen and tau_mem from measurements at a list of steps.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import InvalidParameterError, NumericalError, check_finite_array
from ..metrics import distance_ratios

log = logging.getLogger("rfdm.nets")


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) two-sided interval of a binomial proportion k/n:
    low = Beta quantile (1 - c)/2 of Beta(k, n - k + 1) (0 if k = 0), high = quantile (1 + c)/2 of
    Beta(k + 1, n - k) (1 if k = n); computed by scipy.stats.binomtest(...).proportion_ci("exact")."""
    from scipy.stats import binomtest

    if not (isinstance(n, (int, np.integer)) and n >= 1 and 0 <= k <= n):
        raise InvalidParameterError(f"a binomial interval needs 0 <= k <= n and n >= 1, got k = {k}, n = {n}.")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def memorization(samples, training, threshold: float = 1.0 / 3.0, confidence: float = 0.95) -> dict:
    """f_mem = fraction of samples whose nearest over second-nearest training distance is below
    ``threshold`` ([B24], [B25]; rfdm.metrics.distance_ratios), with its Clopper–Pearson interval."""
    ratios = distance_ratios(np.asarray(samples, np.float64).reshape(len(samples), -1),
                             np.asarray(training, np.float64).reshape(len(training), -1))
    k, n = int(np.count_nonzero(ratios < threshold)), int(ratios.size)
    return {"f_mem": k / n, "f_mem_ci": list(clopper_pearson(k, n, confidence)), "n_memorized": k, "n_samples": n}


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Fréchet (2-Wasserstein) distance squared between N(mu1, C1) and N(mu2, C2):
    |mu1 - mu2|^2 + Tr C1 + Tr C2 - 2 Tr (C1^{1/2} C2 C1^{1/2})^{1/2}, the square roots taken by symmetric
    eigendecompositions (negative rounding eigenvalues clipped at 0)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    c1, c2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    w, v = np.linalg.eigh(0.5 * (c1 + c1.T))
    s1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = s1 @ c2 @ s1
    cross = float(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0, None)).sum())
    out = float(np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * cross)
    if not np.isfinite(out):
        raise NumericalError("the Fréchet distance is not finite (non-finite features).")
    return max(out, 0.0)


def frechet_of_samples(f1, f2) -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two feature samples."""
    f1, f2 = check_finite_array("features", f1, ndim=2), check_finite_array("features", f2, ndim=2)
    return frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))


def cache_dir() -> Path:
    """Where the digits classifier is cached: $RFDM_CACHE, else $XDG_CACHE_HOME/rfdm, else ~/.cache/rfdm."""
    if os.environ.get("RFDM_CACHE"):
        return Path(os.environ["RFDM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rfdm"


class DigitsFeatures:
    """The hidden layer (ReLU, ``hidden`` units) of an MLP classifier (scikit-learn MLPClassifier, seed 0)
    trained once on all 1797 digits (scaled as in :mod:`rfdm.nets.data`, upsampled by ``upsample``); its
    weights are cached as a .npz keyed by the data's hash, so later runs only load them.  ``features(x)``:
    relu(x W1 + b1) in float64 for x (N, d); ``accuracy``: its training accuracy (recorded)."""

    def __init__(self, upsample: int = 1, hidden: int = 64, directory=None):
        from .data import digits_labels, load_array, upsample_images

        x, _ = load_array("digits")
        x = upsample_images(x, upsample).reshape(len(x), -1)
        y = digits_labels()
        digest = hashlib.sha256(np.ascontiguousarray(x).tobytes() + bytes([hidden])).hexdigest()[:16]
        directory = Path(directory) if directory is not None else cache_dir()
        self.path = directory / f"digits_classifier_{digest}.npz"
        if self.path.exists():
            with np.load(self.path) as z:
                self.W1, self.b1, self.accuracy = z["W1"], z["b1"], float(z["accuracy"])
            self.cached = True
        else:
            from sklearn.neural_network import MLPClassifier

            clf = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=400, random_state=0, alpha=1e-3)
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(x, y)
            self.W1, self.b1 = clf.coefs_[0].astype(np.float64), clf.intercepts_[0].astype(np.float64)
            self.accuracy = float(clf.score(x, y))
            directory.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}.npz")
            np.savez(tmp, W1=self.W1, b1=self.b1, accuracy=self.accuracy)
            os.replace(tmp, self.path)
            self.cached = False
            log.info("trained the digits classifier (accuracy %.3f), cached at %s", self.accuracy, self.path)
        self.d = self.W1.shape[0]

    def features(self, x) -> np.ndarray:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        if x.shape[1] != self.d:
            raise InvalidParameterError(f"the digits classifier takes vectors of dimension {self.d}, got {x.shape[1]}.")
        return np.maximum(x @ self.W1 + self.b1, 0.0)

    def fid(self, samples, reference) -> float:
        """The "digits FID": Fréchet distance of the classifier features of samples and reference points."""
        return frechet_of_samples(self.features(samples), self.features(reference))


def first_step_above(steps, values, level):
    """(step, interval): the first measured step whose value exceeds ``level``, and the bracket
    [previous measured step, that step] in which the crossing happened; (None, None) if never."""
    values = np.asarray(values, dtype=np.float64)
    hit = np.nonzero(values > level)[0]
    if hit.size == 0:
        return None, None
    k = int(hit[0])
    return int(steps[k]), [int(steps[max(k - 1, 0)]), int(steps[k])]


def tau_mem(steps, f_mem, level: float = 0.02):
    """tau_mem: first measured step with f_mem > level, bracketed by the previous measured step."""
    return first_step_above(steps, f_mem, level)


def tau_gen(steps, quality, margin: float = 0.1):
    """tau_gen: first measured step whose quality (lower is better) is within ``margin`` of its best, measured
    on a log scale when every value is > 0 (a Fréchet distance falls by decades from its value at step 0):
    log q <= log q_best + margin (log q_0 - log q_best); otherwise (an unbiased energy distance can be <= 0)
    linearly: q <= q_best + margin (q_0 - q_best).  Returns (step, [previous measured step, step], scale)."""
    q = np.asarray(quality, dtype=np.float64)
    if q.size == 0 or not np.all(np.isfinite(q)):
        return None, None, None
    scale = "log" if np.all(q > 0) else "linear"
    v = np.log(q) if scale == "log" else q
    best = float(v.min())
    bound = best + margin * max(float(v[0]) - best, 0.0)
    k = int(np.nonzero(v <= bound)[0][0])
    return int(steps[k]), [int(steps[max(k - 1, 0)]), int(steps[k])], scale
