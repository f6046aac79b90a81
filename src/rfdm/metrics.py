"""Metrics of generated samples (docs/theory.md §5, §6): memorization, mixture statistics, distances between laws.

* :func:`nearest_neighbours` — the k nearest reference points of every query, computed over blocks of
  queries x blocks of reference points whose size is set by a memory budget (never an N x n x d array, nor
  an N x n matrix unless it fits the budget); the distances of the selected pairs are recomputed directly
  as |q - r| at the end, so the expansion |q|^2 - 2 q.r + |r|^2 used for the search costs no precision.
  With ``device="cuda"`` (or "torch-cpu", :mod:`rfdm.backend`) the blocks, the top-k and the final
  distances are computed there (top-k by torch.topk instead of argpartition); results are NumPy arrays.
* :func:`memorization_fraction` — a sample is memorized when d_1/d_2 < threshold (default 1/3, at most 1
  since d_1 <= d_2), d_1 and d_2 its distances to the nearest and second-nearest training points ([B24],
  [B25]); the fraction comes with an interval that is exact for a binomial proportion
  (:func:`binomial_interval`: Clopper–Pearson by default, or Wilson; the percentile bootstrap of
  :func:`bootstrap_interval` on request).  The bootstrap degenerates at the ends: 0 memorized samples of
  500 give the bootstrap interval (0, 0), while Clopper–Pearson gives [0, 0.0074].
* :func:`mixture_statistics` — for the two-cluster mixture: each sample is assigned to the nearer of the
  two centres (the sign of x.m); per mode, the fraction, and the mean and variance along m and across it.
* :func:`energy_distance` (blocked) and :func:`sliced_wasserstein` — distances between the generated and a
  target law, from samples of each.  The energy distance is the *unbiased* estimate of D^2 (U-statistics):
  it is 0 on average when the laws coincide and therefore negative about half the time then; it is
  returned unclipped (a negative value means "no difference detected at this sample size"), and its
  standard error is of the order of the difference between two such estimates.
* :func:`gaussian_kl` — KL(N(mu, C) || N(mu_0, C_0)) in closed form, and :func:`gaussian_kl_of_samples`
  with the value d(d+3)/(4N) it has on average for N exact samples.

Every input array is checked: NaN or infinite entries raise InvalidParameterError.  A result that overflows
(e.g. distances of points of size 1e200, whose squares are infinite) raises NumericalError instead of being
returned as inf or NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .backend import backend_of, resolve_device
from .errors import (InvalidParameterError, NumericalError, check_finite_array, check_positive_float,
                     check_positive_int)

#: default memory for the distance blocks, in bytes
DEFAULT_BLOCK_BUDGET = 32 * 2 ** 20
MEMORIZATION_THRESHOLD = 1.0 / 3.0
#: interval methods of :func:`memorization_fraction`
INTERVAL_METHODS = ("clopper-pearson", "wilson", "bootstrap")


def _finite_result(name: str, value) -> float:
    """``value`` as a float, or NumericalError when it is NaN or infinite (an overflow in its computation)."""
    value = float(value)
    if not math.isfinite(value):
        raise NumericalError(f"the {name} is {value} (overflow or NaN in its computation; rescale the inputs).")
    return value


def _pair(x, y, xname, yname):
    x = check_finite_array(xname, x, ndim=2)
    y = check_finite_array(yname, y, ndim=2)
    if x.shape[1] != y.shape[1]:
        raise InvalidParameterError(f"{xname} has dimension {x.shape[1]} but {yname} has {y.shape[1]}.")
    return x, y


def _blocks(n_rows: int, n_cols: int, budget: int, arrays: float):
    """Block sizes (rows, cols) with ``arrays`` float64/int64 arrays of rows x cols within ``budget`` bytes."""
    words = max(1, int(int(budget) // (8 * arrays)))
    cols = int(max(1, min(n_cols, words // max(1, min(n_rows, 256)))))
    rows = int(max(1, min(n_rows, words // cols)))
    return rows, cols


def _sq_dist_block(q, q2, r, r2):
    """|q_i - r_j|^2 for a block (expansion, clipped at 0), on the device of q."""
    D = q @ r.T
    D *= -2.0
    D += q2[:, None]
    D += r2[None, :]
    backend_of(D).clip_min_(D, 0.0)
    return D


@np.errstate(over="ignore", invalid="ignore")  # an overflow is detected on the result and raised
def nearest_neighbours(queries, reference, k: int = 2, memory_budget: int = DEFAULT_BLOCK_BUDGET, device=None):
    """Distances (N, k) and indices (N, k) of the k nearest reference points of every query, nearest first.

    Work in blocks of queries x reference points: two rows x cols arrays (the squared distances and
    argpartition's indices) plus headroom for numpy's workspace fit in ``memory_budget`` bytes (measured peak
    with tracemalloc: within the budget plus the outputs); a running top-k is merged block by block.  The final distances are recomputed as |q - r| for the k selected pairs.
    ``device``: where the blocks and the top-k run (:func:`rfdm.backend.resolve_device`); NumPy results.
    """
    q, r = _pair(queries, reference, "queries", "reference")
    k = check_positive_int("k", k)
    if k > r.shape[0]:
        raise InvalidParameterError(f"asked for {k} nearest neighbours among {r.shape[0]} reference points.")
    budget = check_positive_int("memory_budget", memory_budget)
    bk = resolve_device(device)
    xp = bk.xp
    N, n = q.shape[0], r.shape[0]
    rows, cols = _blocks(N, n, budget, 2.5)  # distances + argpartition's indices + numpy's workspace
    rows = int(max(1, min(rows, budget // (16 * k * (q.shape[1] + 6)))))  # the final (rows, k, d) differences
    q, r = bk.asarray(q), bk.asarray(r)
    q2 = xp.einsum("ij,ij->i", q, q)
    r2 = xp.einsum("ij,ij->i", r, r)
    dist = np.empty((N, k))
    idx = np.empty((N, k), dtype=np.int64)
    for a in range(0, N, rows):
        qa, qa2 = q[a:a + rows], q2[a:a + rows]
        m = qa.shape[0]
        best_d = bk.full((m, k), math.inf)
        best_i = bk.full((m, k), -1, integer=True)
        for c in range(0, n, cols):
            D = _sq_dist_block(qa, qa2, r[c:c + cols], r2[c:c + cols])
            kk = min(k, D.shape[1])
            if kk < D.shape[1]:
                part = bk.smallest_k(D, kk)  # NumPy: argpartition's rows x cols indices, the budget's second array
            else:
                part = xp.broadcast_to(bk.arange(D.shape[1]), (m, D.shape[1]))
            cand_d = xp.take_along_axis(D, part, axis=1)
            del D
            all_d = bk.concat([best_d, cand_d], axis=1)
            all_i = bk.concat([best_i, part + c], axis=1)
            sel = bk.argsort(all_d, axis=1)[:, :k]
            best_d = xp.take_along_axis(all_d, sel, axis=1)
            best_i = xp.take_along_axis(all_i, sel, axis=1)
        # exact distances of the selected pairs, then the final order
        diff = qa[:, None, :] - r[best_i]
        exact = xp.sqrt(xp.einsum("ijk,ijk->ij", diff, diff))
        order = bk.argsort(exact, axis=1)
        dist[a:a + rows] = bk.to_numpy(xp.take_along_axis(exact, order, axis=1))
        idx[a:a + rows] = bk.to_numpy(xp.take_along_axis(best_i, order, axis=1))
    if not np.all(np.isfinite(dist)):
        raise NumericalError("a nearest-neighbour distance overflowed to infinity (points too large to square in "
                             "float64); rescale the inputs.")
    return dist, idx


def distance_ratios(samples, training, memory_budget: int = DEFAULT_BLOCK_BUDGET, device=None) -> np.ndarray:
    """d_1/d_2 for every sample (nearest over second-nearest training distance); 0/0 counts as 0 (a sample
    on a training point that appears twice).  ``device``: see :func:`nearest_neighbours`."""
    training = check_finite_array("training set", training, ndim=2)
    if training.shape[0] < 2:
        raise InvalidParameterError(f"the memorization fraction needs at least 2 training points, got "
                                    f"{training.shape[0]}.")
    dist, _ = nearest_neighbours(samples, training, 2, memory_budget, device=device)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = dist[:, 0] / dist[:, 1]
    ratio[dist[:, 1] == 0] = 0.0
    return ratio


@dataclass
class Memorization:
    """f_mem with its interval (``method``: clopper-pearson, wilson or bootstrap, at ``confidence``);
    ``ratios`` are the d_1/d_2 of every sample."""

    fraction: float
    interval: tuple
    n_memorized: int
    n_samples: int
    threshold: float
    confidence: float
    ratios: np.ndarray
    method: str = "clopper-pearson"

    def as_dict(self) -> dict:
        return {"f_mem": self.fraction, "f_mem_ci": list(self.interval), "f_mem_ci_method": self.method,
                "n_memorized": self.n_memorized, "n_samples": self.n_samples, "threshold": self.threshold,
                "confidence": self.confidence}


def _check_counts(n_success, n_total, confidence):
    n_total = check_positive_int("number of samples", n_total)
    if isinstance(n_success, bool) or not isinstance(n_success, (int, np.integer)) or not 0 <= n_success <= n_total:
        raise InvalidParameterError(f"the number of successes must be an integer between 0 and the number of "
                                    f"samples {n_total}, got {n_success!r}.")
    confidence = check_positive_float("confidence", confidence)
    if confidence >= 1:
        raise InvalidParameterError(f"confidence must be in (0, 1), got {confidence:g}.")
    return int(n_success), n_total, confidence


def binomial_interval(n_success: int, n_total: int, confidence: float = 0.95,
                      method: str = "clopper-pearson") -> tuple:
    """Two-sided interval for a binomial proportion k/n, from ``scipy.stats.binomtest(k, n).proportion_ci``.

    ``clopper-pearson`` (SciPy's ``exact``): the bounds are the Beta quantiles
    lo = B^{-1}(alpha/2; k, n - k + 1), hi = B^{-1}(1 - alpha/2; k + 1, n - k), with lo = 0 at k = 0 and
    hi = 1 at k = n; its coverage is at least ``confidence`` for every true proportion (conservative).  At
    k = 0 the upper bound is 1 - (alpha/2)^{1/n}: 0.0074 for n = 500 at 95 %.  ``wilson``: the score interval
    (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = Phi^{-1}(1 - alpha/2); coverage close to
    nominal on average, shorter.  Returns (low, high).
    """
    n_success, n_total, confidence = _check_counts(n_success, n_total, confidence)
    methods = {"clopper-pearson": "exact", "wilson": "wilson"}
    if method not in methods:
        raise InvalidParameterError(f"unknown binomial interval method {method!r}; choose clopper-pearson or wilson.")
    from scipy.stats import binomtest

    ci = binomtest(n_success, n_total).proportion_ci(confidence_level=confidence, method=methods[method])
    return float(ci.low), float(ci.high)


def bootstrap_interval(n_success: int, n_total: int, confidence: float = 0.95, n_boot: int = 4000,
                       seed=0) -> tuple:
    """Percentile bootstrap interval of a fraction of 0/1 outcomes.

    Resampling the n outcomes with replacement gives a count of successes distributed exactly as
    Binomial(n, k/n), so the bootstrap replicates are drawn from that law directly (same distribution, no
    n x n_boot array).  Returns (low, high) at the given two-sided confidence.  It collapses to (0, 0) at
    k = 0 and (1, 1) at k = n, and under-covers for small k: prefer :func:`binomial_interval`.
    """
    n_success, n_total, confidence = _check_counts(n_success, n_total, confidence)
    n_boot = check_positive_int("n_boot", n_boot)
    rng = np.random.default_rng(seed)
    reps = rng.binomial(n_total, n_success / n_total, size=n_boot) / n_total
    lo, hi = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def memorization_fraction(samples, training, threshold: float = MEMORIZATION_THRESHOLD,
                          confidence: float = 0.95, n_boot: int = 4000, seed=0,
                          memory_budget: int = DEFAULT_BLOCK_BUDGET, device=None,
                          method: str = "clopper-pearson") -> Memorization:
    """f_mem = (1/N) #{samples with d_1/d_2 < ``threshold``} ([B25] memorization criterion, d_1 <= d_2 the
    distances to the two nearest training points) and its interval at ``confidence``: ``method`` =
    clopper-pearson (default, exact: :func:`binomial_interval`), wilson, or bootstrap (the percentile
    bootstrap of :func:`bootstrap_interval` with ``n_boot`` replicates drawn from ``seed``; the seed is used
    by no other method).  ``threshold`` lies in (0, 1]: a ratio d_1/d_2 is at most 1.  The nearest neighbours
    run on ``device`` (:func:`nearest_neighbours`)."""
    threshold = check_positive_float("threshold", threshold)
    if threshold > 1:
        raise InvalidParameterError(f"the memorization threshold must be in (0, 1] (d_1/d_2 is at most 1), got "
                                    f"{threshold:g}.")
    if method not in INTERVAL_METHODS:
        raise InvalidParameterError(f"unknown interval method {method!r}; choose one of {', '.join(INTERVAL_METHODS)}.")
    ratios = distance_ratios(samples, training, memory_budget, device=device)
    k = int(np.count_nonzero(ratios < threshold))
    n = ratios.size
    if method == "bootstrap":
        lo, hi = bootstrap_interval(k, n, confidence, n_boot, seed)
    else:
        lo, hi = binomial_interval(k, n, confidence, method)
    return Memorization(fraction=k / n, interval=(lo, hi), n_memorized=k, n_samples=n, threshold=threshold,
                        confidence=confidence, ratios=ratios, method=method)


def mixture_statistics(samples, m) -> dict:
    """Statistics of samples of a two-cluster mixture with centres +-m (any positive multiple of m).

    Each sample goes to the mode of the nearer centre, i.e. + when x.m > 0.  Per mode (+, -): the fraction
    of samples, the mean and the variance of the coordinate s = x.m/|m| along m, and the variance across m,
    (1/(d-1)) times the summed variance of the other d - 1 coordinates.  Variances are unbiased (ddof = 1);
    an empty mode gets nan, a mode with one sample a mean and nan variances.  Also the totals over all
    samples (``*_total``).
    """
    x = check_finite_array("samples", samples, ndim=2)
    m = check_finite_array("m", m, ndim=1)
    if m.size != x.shape[1]:
        raise InvalidParameterError(f"m has length {m.size} but the samples have dimension {x.shape[1]}.")
    norm = float(np.linalg.norm(m))
    if norm == 0:
        raise InvalidParameterError("m must not be the zero vector.")
    u = m / norm
    d = x.shape[1]
    s = x @ u

    def stats(sel):
        xs, ss = x[sel], s[sel]
        if ss.size < 2:
            return (float(ss[0]) if ss.size else math.nan), math.nan, math.nan
        var_along = float(np.var(ss, ddof=1))
        total = float(np.sum(np.var(xs, axis=0, ddof=1)))
        across = (total - var_along) / (d - 1) if d > 1 else math.nan
        return float(np.mean(ss)), var_along, across

    plus = s > 0
    out = {"mode_fractions": [float(np.mean(plus)), float(np.mean(~plus))]}
    rows = [stats(plus), stats(~plus)]
    out["mean_along_m"] = [r[0] for r in rows]
    out["var_along_m"] = [r[1] for r in rows]
    out["var_across_m"] = [r[2] for r in rows]
    tot = stats(np.ones(s.size, bool))
    out["mean_along_m_total"], out["var_along_m_total"], out["var_across_m_total"] = tot
    return out


def _pairwise_distance_sum(x, y, budget, same: bool) -> float:
    """sum_{i,j} |x_i - y_j| in blocks (diagonal excluded when ``same``)."""
    x2 = np.einsum("ij,ij->i", x, x)
    y2 = np.einsum("ij,ij->i", y, y)
    rows, cols = _blocks(x.shape[0], y.shape[0], budget, 2)
    total = 0.0
    for a in range(0, x.shape[0], rows):
        for c in range(0, y.shape[0], cols):
            D = _sq_dist_block(x[a:a + rows], x2[a:a + rows], y[c:c + cols], y2[c:c + cols])
            if same:
                i = np.arange(max(a, c), min(a + D.shape[0], c + D.shape[1]))
                D[i - a, i - c] = 0.0
            np.sqrt(D, out=D)
            total += float(D.sum())
    return total


def energy_distance(x, y, memory_budget: int = DEFAULT_BLOCK_BUDGET) -> float:
    """Unbiased estimate of the squared energy distance D^2 = 2 E|X - Y| - E|X - X'| - E|Y - Y'| between
    the laws of two samples (Székely & Rizzo).

    The cross term is the mean over all pairs, the within terms are U-statistics (i != j), so the estimate
    is unbiased.  D^2 >= 0 for the laws themselves, with equality iff they coincide, but the *estimate* is
    not clipped: it can be negative, and is so about half the time when the laws coincide (then its mean is
    0).  A negative value means that no difference is detected at this sample size; clipping at 0 would bias
    averages over replications upwards.  Computed in blocks within ``memory_budget`` bytes.  NaN or
    infinite inputs raise InvalidParameterError; an overflow (points too large to square) raises
    NumericalError.
    """
    x, y = _pair(x, y, "x", "y")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise InvalidParameterError("the energy distance needs at least 2 points in each sample.")
    budget = check_positive_int("memory_budget", memory_budget)
    nx, ny = x.shape[0], y.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        cross = _pairwise_distance_sum(x, y, budget, False) / (nx * ny)
        xx = _pairwise_distance_sum(x, x, budget, True) / (nx * (nx - 1))
        yy = _pairwise_distance_sum(y, y, budget, True) / (ny * (ny - 1))
    return _finite_result("energy distance", 2 * cross - xx - yy)


def wasserstein_1d(a, b) -> float:
    """Exact W_2 between the empirical laws of two 1-D samples (any sizes): the integral over u in (0, 1)
    of the squared difference of their quantile functions, on the union of the steps k/n and j/m.  NaN or
    infinite inputs raise InvalidParameterError, an overflow NumericalError."""
    a = np.sort(np.ravel(check_finite_array("a", a)))
    b = np.sort(np.ravel(check_finite_array("b", b)))
    na, nb = a.size, b.size
    cuts = np.unique(np.concatenate([np.arange(na + 1) / na, np.arange(nb + 1) / nb]))
    mid = 0.5 * (cuts[:-1] + cuts[1:])
    qa = a[np.minimum((mid * na).astype(np.int64), na - 1)]
    qb = b[np.minimum((mid * nb).astype(np.int64), nb - 1)]
    with np.errstate(over="ignore", invalid="ignore"):
        w2 = np.sum(np.diff(cuts) * (qa - qb) ** 2)
    return math.sqrt(_finite_result("1-D Wasserstein distance", w2))


def sliced_wasserstein(x, y, n_projections: int = 200, seed=0) -> float:
    """Sliced 2-Wasserstein distance: sqrt of the mean over ``n_projections`` uniformly random unit
    directions theta (drawn from ``seed``) of W_2^2 between the projected samples theta.x and theta.y."""
    x, y = _pair(x, y, "x", "y")
    n_projections = check_positive_int("n_projections", n_projections)
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((x.shape[1], n_projections))
    theta /= np.linalg.norm(theta, axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        px, py = x @ theta, y @ theta
    if not (np.all(np.isfinite(px)) and np.all(np.isfinite(py))):
        raise NumericalError("the projections of the samples overflowed (points too large); rescale the inputs.")
    w2 = [wasserstein_1d(px[:, j], py[:, j]) ** 2 for j in range(n_projections)]
    return math.sqrt(_finite_result("sliced Wasserstein distance", np.mean(w2)))


def gaussian_kl(mean, cov, cov_target, mean_target=None) -> float:
    """KL(N(mean, cov) || N(mean_target, cov_target)) = (1/2)[Tr(C_0^{-1} C) - d + (mu - mu_0)^T C_0^{-1}
    (mu - mu_0) + log det C_0 - log det C], by Cholesky factorisations."""
    mean = check_finite_array("mean", np.atleast_1d(mean), ndim=1)
    C = check_finite_array("cov", np.atleast_2d(cov), ndim=2)
    C0 = check_finite_array("target covariance", np.atleast_2d(cov_target), ndim=2)
    d = mean.size
    if C.shape != (d, d) or C0.shape != (d, d):
        raise InvalidParameterError(f"covariances must be {d} x {d}.")
    mu0 = np.zeros(d) if mean_target is None else check_finite_array("target mean", mean_target, ndim=1)
    try:
        L0 = np.linalg.cholesky(C0)
        L = np.linalg.cholesky(C)
    except np.linalg.LinAlgError:
        raise InvalidParameterError("the covariances must be positive definite.") from None
    import scipy.linalg

    M = scipy.linalg.solve_triangular(L0, L, lower=True)
    diff = scipy.linalg.solve_triangular(L0, mean - mu0, lower=True)
    logdet = 2 * (np.sum(np.log(np.diag(L0))) - np.sum(np.log(np.diag(L))))
    with np.errstate(over="ignore", invalid="ignore"):
        kl = 0.5 * (np.sum(M * M) - d + diff @ diff + logdet)
    return _finite_result("Gaussian KL divergence", kl)


def gaussian_kl_of_samples(samples, cov_target, mean_target=None) -> dict:
    """KL of the Gaussian fitted to ``samples`` (mean, unbiased covariance) from the target Gaussian, and
    ``kl_null`` = d(d+3)/(4N), its leading-order expectation when the N samples are exact (the fitting
    noise alone: d/(2N) from the mean, d(d+1)/(4N) from the covariance)."""
    x = check_finite_array("samples", samples, ndim=2)
    N, d = x.shape
    if N <= d:
        raise InvalidParameterError(f"the Gaussian KL needs more samples than dimensions, got {N} for d = {d}.")
    kl = gaussian_kl(x.mean(axis=0), np.cov(x, rowvar=False).reshape(d, d), cov_target, mean_target)
    return {"gaussian_kl": kl, "kl_null": d * (d + 3) / (4.0 * N)}
