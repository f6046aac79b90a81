"""Random features phi = sigma(W x / sqrt(d)) and their statistics (docs/theory.md §2).

For a training set {x^nu} at diffusion time t:

    U = (1/n) sum_nu E_xi[phi phi^T]   (p x p),     V = (1/n) sum_nu E_xi[phi xi^T]   (p x d),

with phi = sigma(W x_t^nu / sqrt(d)) and x_t^nu = e^{-t} x^nu + sqrt(Delta_t) xi.  The population
versions (x drawn fresh from the data law) are U~, V~; Y = E_y[phi(y) y^T] Sigma_t^{-1} enters the score
error.  [B25] Sec. 3 defines U, V; the exact noise averages below were derived for this project.

Exact noise average.  Given x^nu, h = W x_t/sqrt(d) is Gaussian with mean m^nu = e^{-t} W x^nu/sqrt(d)
and covariance C = Delta_t W W^T/d.  With s_i = sqrt(C_ii) and rho_ij = C_ij/(s_i s_j) (the cosine of
w_i and w_j), Mehler's formula gives, for i != j,

    E[sigma(h_i) sigma(h_j)] = sum_{k>=0} rho_ij^k a_k(m_i, s_i) a_k(m_j, s_j),

a_k the normalised Hermite coefficients of :mod:`rfdm.activations`.  The diagonal is the 1-D integral
E[sigma(h_i)^2].  By Cauchy–Schwarz on the Hermite tail, the series truncated after order K errs by at most
|rho_ij|^{K+1} r_i r_j with r_i^2 = E[sigma(h_i)^2] - sum_{k<=K} a_k^2 (per data point), so

    ||U - U_K||_F <= sqrt( sum_{i!=j} rho_ij^{2K+2} rbar_i^2 rbar_j^2 ),   rbar_i^2 = (1/n) sum_nu r_{i,nu}^2,

and K is the smallest order for which this bound is below ``rtol * ||diag U||_2`` (a lower bound of
||U||_F).  By Stein's lemma V = sqrt(Delta_t/d) diag((1/n) sum_nu E[sigma'(h^nu)]) W exactly.

Devices (:mod:`rfdm.backend`): with ``device="cuda"`` (or "torch-cpu") the assembly of U runs on torch
tensors: the correlation blocks, the truncation-bound sums, the Hermite coefficients of the built-in
activations (both passes) and the O(n p^2 K) products of pass 2.  The choice of the quadrature rule, the
pairs integrated directly in 2-D and V stay on the host.  U, V come back as NumPy float64 arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .activations import Activation, _hermite_weight_matrix, evaluate, get_activation, quadrature_rule
from .backend import backend_of, resolve_device
from .diffusion import check_time, decay, delta_t
from .errors import (InvalidParameterError, NumericalError, check_finite_array, check_positive_float,
                     check_positive_int)

#: default working memory for the batched assembly, in bytes (at least p^2 doubles is always allowed)
DEFAULT_MEMORY_BUDGET = 2 ** 28
#: highest Hermite order the truncation search may reach
KMAX_CAP = 40
#: orders examined in the first pass (enough at small t; the pass is redone up to KMAX_CAP if not)
KMAX_FIRST = 12
#: correlation cuts tried, in order, above which pairs of features are integrated directly in 2-D
PAIR_CUTS = (0.9, 0.8, 0.7, 0.6, 0.5)
#: largest number of sigma evaluations allowed for the direct pairs
MAX_PAIR_WORK = 4e9
#: NumPy: bytes of quadrature temporaries per chunk of (data point, feature) pairs in the 1-D expectations of
#: both Mehler passes (about a core's L2 cache: each chunk's node values are built, passed through sigma and
#: projected on the Hermite polynomials while they stay in cache, instead of streaming through memory)
CHUNK_BYTES = 2 ** 20
#: NumPy: rows per block of the pass-2 products (smaller blocks compute less of the lower triangle: a block
#: of r rows computes r (p - start) entries, (R + 1)/(2R) of p^2 for R blocks)
PASS2_BLOCK_ROWS = 256


@dataclass
class RandomFeatures:
    """Frozen first layer W (p x d, N(0, 1) entries) and the activation sigma."""

    W: np.ndarray
    activation: Activation

    def __post_init__(self):
        self.W = check_finite_array("W", self.W, ndim=2)
        self.activation = get_activation(self.activation)

    @classmethod
    def sample(cls, d: int, p: int, activation="tanh", rng: np.random.Generator | int = 0) -> "RandomFeatures":
        """Draw W with i.i.d. N(0, 1) entries from ``rng`` (a Generator or a seed)."""
        d, p = check_positive_int("d", d), check_positive_int("p", p)
        rng = np.random.default_rng(rng)
        return cls(rng.standard_normal((p, d)), activation)

    @property
    def p(self) -> int:
        return self.W.shape[0]

    @property
    def d(self) -> int:
        return self.W.shape[1]

    def preactivations(self, x) -> np.ndarray:
        """h = W x / sqrt(d) for x of shape (n, d); returns (n, p)."""
        return (x @ self.W.T) / math.sqrt(self.d)

    def __call__(self, x) -> np.ndarray:
        """phi(x) = sigma(W x / sqrt(d)), shape (n, p)."""
        return self.activation(self.preactivations(x))

    def check_data(self, X, name: str = "X") -> np.ndarray:
        X = check_finite_array(name, X, ndim=2)
        if X.shape[1] != self.d:
            raise InvalidParameterError(f"{name} has {X.shape[1]} columns but the features have d = {self.d}.")
        return X


@dataclass
class TrainingStatistics:
    """Noise-averaged U (p x p) and V (p x d) of a training set, defining the per-dimension loss

        L(A) = c + (kappa/d) Tr(A U A^T)/p + (2 sqrt(kappa)/d) Tr(A V)/sqrt(p).

    For the per-time model at time t, kappa = Delta_t and c = 1 (the defaults, ``loss_scale=None``); the
    time-integrated model sets its own.  ``n_draws`` is None for the exact noise average and m for a
    Monte Carlo estimate with m draws per point.
    """

    U: np.ndarray
    V: np.ndarray
    t: float
    n: int
    n_draws: int | None = None
    info: dict = field(default_factory=dict)
    loss_scale: float | None = None
    loss_constant: float = 1.0

    @property
    def delta(self) -> float:
        return float(delta_t(self.t))

    @property
    def kappa(self) -> float:
        """The loss scale kappa (Delta_t for the per-time model)."""
        return self.delta if self.loss_scale is None else float(self.loss_scale)


@dataclass
class PopulationStatistics:
    """Population statistics at time t: U~ = E[phi phi^T], V~ = E[phi xi^T] for fresh data,
    Y = -E_y[phi(y) S(y)^T] (= E[phi y^T] Sigma_t^{-1} for Gaussian data) and ``score_norm`` = E|S(y, t)|^2.
    The test loss is c + (kappa/d) Tr(A U~ A^T)/p + (2 sqrt(kappa)/d) Tr(A V~)/sqrt(p) (kappa = Delta_t and
    c = 1 by default), the score error (1/d)[Tr(A U~ A^T)/p + 2 Tr(A Y)/sqrt(p) + score_norm]."""

    U: np.ndarray
    V: np.ndarray
    Y: np.ndarray
    score_norm: float
    t: float
    info: dict = field(default_factory=dict)
    loss_scale: float | None = None
    loss_constant: float = 1.0

    @property
    def kappa(self) -> float:
        return float(delta_t(self.t)) if self.loss_scale is None else float(self.loss_scale)


def _unit_rows(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(L, axis=1)
    if np.any(norms == 0):
        raise InvalidParameterError("a feature has a zero weight vector, so its pre-activation is degenerate.")
    return L / norms[:, None], norms


def _row_blocks(p: int, rows: int):
    for s in range(0, p, rows):
        yield slice(s, min(s + rows, p))


def _offdiag_rho_block(directions, rows: slice):
    """rho[rows, :] with the diagonal entries set to 0 (on the device of ``directions``)."""
    block = directions[rows] @ directions.T
    i = backend_of(directions).arange(rows.start, rows.stop)
    block[i - rows.start, i] = 0.0
    return block


def _power_(x, e: int):
    """x^e (elementwise) for an integer e >= 1 by repeated squaring: a few products instead of pow, which
    costs ~10x a product per entry.  Overwrites x; returns the result (x itself when e is a power of 2)."""
    result = None
    while True:
        if e & 1:
            if e == 1 and result is None:
                return x
            if result is None:
                result = x.clone() if hasattr(x, "clone") else x.copy()
            else:
                result *= x
        e >>= 1
        if not e:
            return result
        x *= x


def _truncation_bound(directions, tail2, order: int, rows: int, rho_cut: float = 1.0) -> float:
    """sqrt(sum rho_ij^{2K+2} tail2_i tail2_j) over the pairs i != j with |rho_ij| <= rho_cut, K = ``order``.

    The sum is symmetric in (i, j): each row block takes the columns from its own first row on (the square
    on the diagonal counted as it is, the rest twice)."""
    total = 0.0
    p = directions.shape[0]
    bk = backend_of(directions)
    for blk in _row_blocks(p, min(rows, PASS2_BLOCK_ROWS)):
        r2 = directions[blk] @ directions[blk.start:].T
        i = bk.arange(0, blk.stop - blk.start)
        r2[i, i] = 0.0
        r2 *= r2
        if rho_cut < 1.0:
            r2[r2 > rho_cut * rho_cut] = 0.0
        r2 = _power_(r2, order + 1)
        sq = blk.stop - blk.start
        w = r2[:, :sq] @ tail2[blk] + 2.0 * (r2[:, sq:] @ tail2[blk.stop:])
        total += float(tail2[blk] @ w)
    return math.sqrt(max(total, 0.0))


def _choose_order(directions, tail2, target, rows, rho_max, cuts):
    """Smallest order K (and the largest cut) whose truncation bound meets ``target``.

    Pairs with |rho| > cut are left to direct 2-D quadrature, so the series need only converge for the
    others.  The bound decreases with K, so K is found by bisection.  Returns (K, bound, cut) or None.
    """
    kcap = tail2.shape[1] - 1
    bk = backend_of(tail2)
    for cut in cuts:
        if _truncation_bound(directions, tail2[:, kcap], kcap, rows, cut) > target:
            continue
        crude = min(cut, rho_max) ** np.arange(1, kcap + 2) * bk.to_numpy(bk.xp.sum(tail2, axis=0))
        lo, hi = 0, int(np.argmax(crude <= target)) if np.any(crude <= target) else kcap
        bounds = {}
        while lo < hi:
            mid = (lo + hi) // 2
            bounds[mid] = _truncation_bound(directions, tail2[:, mid], mid, rows, cut)
            if bounds[mid] <= target:
                hi = mid
            else:
                lo = mid + 1
        bound = bounds[lo] if lo in bounds else _truncation_bound(directions, tail2[:, lo], lo, rows, cut)
        return lo, bound, cut
    return None


def _strong_pairs(directions, rows, cut):
    """Index arrays (i, j), i < j, and rho_ij of the pairs with |rho_ij| > cut, as NumPy arrays."""
    bk = backend_of(directions)
    I, J, R = [], [], []
    for blk in _row_blocks(directions.shape[0], rows):
        rho = _offdiag_rho_block(directions, blk)
        bi, bj = bk.xp.nonzero(bk.xp.abs(rho) > cut)
        keep = bi + blk.start < bj
        I.append(bk.to_numpy(bi[keep] + blk.start))
        J.append(bk.to_numpy(bj[keep]))
        R.append(bk.to_numpy(rho[bi[keep], bj[keep]]))
    return np.concatenate(I), np.concatenate(J), np.concatenate(R)


def _outer_rule(act, splits, rule):
    """Nodes and weights, each (n, q), for E f(z), z ~ N(0, 1), where f is smooth except at the points
    ``splits`` (n, s): the activation's own rule if it has no kinks, else Gauss–Legendre on [-L, L] split
    at those points (each piece smooth)."""
    n = splits.shape[0]
    if not getattr(act, "kinks", ()):
        z, w = quadrature_rule(rule, 0)
        return np.broadcast_to(z, (n, z.size)), np.broadcast_to(w, (n, z.size))
    half = 12.0
    x, wl = np.polynomial.legendre.leggauss(96)
    inner = np.sort(np.clip(splits, -half, half), axis=1)
    edges = np.concatenate([np.full((n, 1), -half), inner, np.full((n, 1), half)], axis=1)
    a, b = edges[:, :-1, None], edges[:, 1:, None]
    z = (0.5 * (b - a) * x + 0.5 * (b + a)).reshape(n, -1)
    w = (0.5 * (b - a) * wl).reshape(n, -1) * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return z, w


def _pair_second_moments(act, means, stds, I, J, rho, rule):
    """(1/n) sum_nu E[sigma(h_i) sigma(h_j)] for the listed pairs, h_i = m_i + s_i z1,
    h_j = m_j + s_j (rho z1 + sqrt(1 - rho^2) z2): the inner integral over z2 is the activation's own
    1-D Gaussian expectation (closed form or quadrature), the outer one a quadrature in z1."""
    out = np.empty(I.size)
    for k, (i, j, r) in enumerate(zip(I, J, rho)):
        kinks = np.asarray(getattr(act, "kinks", ()), dtype=float)
        # sigma(h_i) kinks at z1 = (kink - m_i)/s_i; the smoothed sigma(h_j) bends at (kink - m_j)/(s_j rho)
        splits = np.concatenate([(kinks[None, :] - means[:, i, None]) / stds[i],
                                 (kinks[None, :] - means[:, j, None]) / (stds[j] * r if r != 0 else np.inf)], axis=1)
        z, w = _outer_rule(act, splits, rule)
        inner_mean = means[:, j, None] + stds[j] * r * z
        inner, _ = act.gaussian_coefficients(inner_mean, stds[j] * math.sqrt(max(1.0 - r * r, 1e-300)), 0,
                                             rule=None if rule[0] == "closed-form" else rule)
        f1 = act(means[:, i, None] + stds[i] * z)
        out[k] = float(np.mean(np.sum(w * f1 * inner[..., 0], axis=1)))
    return out


def _chunks(n: int, p: int, per_pair: int):
    """(rows, cols) slices covering an (n, p) array of pairs, each chunk holding at most CHUNK_BYTES of
    ``per_pair`` doubles per pair (whole rows when one row fits; at least one pair)."""
    pairs = max(1, CHUNK_BYTES // (8 * max(per_pair, 1)))
    if pairs >= p:
        rows = pairs // p
        for s in range(0, n, rows):
            yield slice(s, min(s + rows, n)), slice(0, p)
    else:
        for s in range(n):
            for c in range(0, p, pairs):
                yield slice(s, s + 1), slice(c, min(c + pairs, p))


def _plain_quadrature(act) -> bool:
    """Whether ``act`` computes its Gaussian expectations with the default quadrature of
    :meth:`Activation.gaussian_coefficients` (tanh, erf, custom activations), not a closed form of its own."""
    return type(act).gaussian_coefficients is Activation.gaussian_coefficients


class _Quadrature:
    """The 1-D Gaussian expectations ``act.gaussian_coefficients`` of a fixed set of features (stds, orders up
    to kmax, quadrature ``rule``) for batches of data points; calling it on means (batch, features) returns
    (a, second moment), a of shape means.shape + (kmax + 1,), the second moment None when ``second`` is False.

    NumPy: evaluated in chunks of CHUNK_BYTES of quadrature temporaries (the same formulas, node by node, so
    the same numbers; only the memory traffic changes); for activations with the default quadrature the
    formulas of :meth:`Activation.gaussian_coefficients` are applied here (s z precomputed once, one reused
    buffer), and with ``second=False`` the E sigma^2 sums are skipped (pass 2 needs only the a_k).  Other
    devices: ``act.gaussian_coefficients`` on the device of ``means``; activations without ``array_api`` (e.g.
    custom ones) are evaluated on the host and their coefficients moved to the device."""

    def __init__(self, act, stds, kmax: int, rule):
        self.act, self.stds, self.kmax, self.rule = act, stds, kmax, rule
        self.bk = backend_of(stds)
        quad = rule[0] != "closed-form"
        self.nodes = quadrature_rule(rule, kmax)[0].size if quad else 1
        self.fast = self.bk.is_numpy and quad and _plain_quadrature(act)
        self.buf = None
        if self.fast:
            if not (np.all(np.isfinite(stds)) and np.all(stds > 0)):
                raise InvalidParameterError("Gaussian expectations need finite means and stds > 0.")
            z, self.w = quadrature_rule(rule, kmax)
            self.H = _hermite_weight_matrix(rule, kmax)
            self.sz = stds[:, None] * z

    def __call__(self, means, second: bool = True):
        act, stds, kmax, rule, bk = self.act, self.stds, self.kmax, self.rule, self.bk
        if not bk.is_numpy:
            if act.array_api:
                return act.gaussian_coefficients(means, stds, kmax, rule=rule)
            a, sec = act.gaussian_coefficients(bk.to_numpy(means), bk.to_numpy(stds), kmax, rule=rule)
            return bk.asarray(a), bk.asarray(sec)
        n, p = means.shape
        nodes = self.nodes
        a = np.empty((n, p, kmax + 1))
        sec = np.empty((n, p)) if second else None
        if not self.fast:
            for r, c in _chunks(n, p, max(nodes, kmax + 1)):
                a_c, s_c = act.gaussian_coefficients(means[r, c], stds[c], kmax, rule=rule)
                a[r, c] = a_c
                if second:
                    sec[r, c] = s_c
            return a, sec
        # Activation.gaussian_coefficients chunk by chunk: f = s z + m, sigma(f), f @ H (and E sigma^2 =
        # (f * f) @ w when asked)
        if not np.all(np.isfinite(means)):
            raise InvalidParameterError("Gaussian expectations need finite means and stds > 0.")
        for r, c in _chunks(n, p, nodes):
            m = means[r, c]
            size = m.size * nodes
            if self.buf is None or self.buf.size < size:
                self.buf = np.empty(size)
            f = self.buf[:size].reshape(m.shape + (nodes,))
            np.add(self.sz[c], m[..., None], out=f)
            f = evaluate(act, f, inplace=True).reshape(-1, nodes)
            dst = a[r, c].reshape(-1, kmax + 1)  # a view: a chunk is whole rows or a piece of one row
            if np.shares_memory(dst, a):
                np.matmul(f, self.H, out=dst)
            else:  # pragma: no cover - not reached with the chunks of _chunks
                a[r, c] = (f @ self.H).reshape(m.shape + (kmax + 1,))
            if second:
                f *= f
                sec[r, c] = (f @ self.w).reshape(m.shape)
        return a, sec


def _coefficients(act, means, stds, kmax, rule, second: bool = True):
    """:class:`_Quadrature` of (act, stds, kmax, rule) applied to ``means`` once."""
    return _Quadrature(act, stds, kmax, rule)(means, second)


def _hermite_energies(act, means, stds, kcap, rule, budget, width, cache=None):
    """Pass over the data: (1/n) sums of E sigma^2, a_k^2, the tails E sigma^2 - sum_{k'<=k} a_k'^2,
    and of (a_0, a_1), on the device of ``means``.  With ``cache`` (an (n, p, kcap + 1) array) the
    coefficients a_k are also kept there, for pass 2 to reuse.  NumPy: batches of rows whose coefficients fit
    in CHUNK_BYTES; other devices: data batches sized from ``budget``."""
    bk = backend_of(means)
    xp = bk.xp
    n, p = means.shape
    diag = bk.zeros(p)
    energy = bk.zeros((p, kcap + 1))
    tail2 = bk.zeros((p, kcap + 1))
    mean01 = bk.zeros((p, 2))
    quad = _Quadrature(act, stds, kcap, rule)
    # NumPy: batches of rows whose coefficients fit in CHUNK_BYTES (reduced while in cache; the quadrature
    # chunks its own temporaries); other devices: batches sized from the budget
    b1 = max(1, CHUNK_BYTES // (8 * p * (kcap + 1)) if bk.is_numpy else budget // (8 * 3 * p * width))
    for s in range(0, n, b1):
        r = slice(s, min(s + b1, n))
        a, sec = quad(means[r])
        if cache is not None:
            cache[r] = a
        diag += xp.sum(sec, axis=0)
        mean01 += xp.sum(a[..., :2], axis=0)
        a *= a
        energy += xp.sum(a, axis=0)
        if bk.is_numpy:  # the running sum over orders, order by order (numpy's cumsum along a short axis is slow)
            for k in range(1, kcap + 1):
                np.add(a[..., k], a[..., k - 1], out=a[..., k])
        else:
            bk.cumsum_(a, axis=-1)
        xp.subtract(sec[..., None], a, out=a)
        bk.clip_min_(a, 0.0)
        tail2 += xp.sum(a, axis=0)
    return diag / n, energy / n, tail2 / n, mean01 / n


def _mehler_products_horner(M, dirs, coeffs, kept, blocks) -> None:
    """NumPy pass-2 products of one data batch: for every row block,

        M[blk, blk.start:] += sum_{k in kept} rho^k o (A_k[blk] A_k[blk.start:]^T),   rho = dirs[blk] dirs[blk.start:]^T,

    by Horner's rule in rho (acc = G_{k_m}; acc = acc o rho^{k_{j+1} - k_j} + G_{k_j}; finally acc o rho^{k_0}),
    each G added by the GEMM itself (BLAS dgemm with beta = 1): one elementwise product per order instead of
    the three of the power-sum form (the same sum, up to rounding)."""
    from scipy.linalg.blas import dgemm

    for blk in blocks:
        rho = dirs[blk] @ dirs[blk.start:].T
        acc = None
        for j in range(len(kept) - 1, -1, -1):
            A = coeffs[j]
            if acc is None:
                acc = A[blk] @ A[blk.start:].T
            else:
                # acc^T (a Fortran-ordered view, no copy) += A[blk.start:] A[blk]^T
                out = dgemm(1.0, A[blk.start:].T, A[blk].T, beta=1.0, c=acc.T, trans_a=1, overwrite_c=1)
                if not np.shares_memory(out, acc):  # BLAS wrapper made a copy: take its result
                    acc[...] = out.T
            gap = kept[j] - (kept[j - 1] if j > 0 else 0)
            if gap == 1:
                acc *= rho
            elif gap > 1:
                acc *= rho ** gap
        M[blk, blk.start:] += acc


def mehler_second_moment(directions, stds, means, activation, rtol: float = 1e-10,
                         memory_budget: int | None = None, kmax_cap: int = KMAX_CAP, device=None,
                         kmax_first: int = KMAX_FIRST, cache_budget: int | None = 0):
    """(1/n) sum_nu E[sigma(h^nu) sigma(h^nu)^T] for h^nu ~ N(means[nu], C), C_ij = s_i s_j rho_ij.

    ``directions`` (p x r) has unit rows with rho = directions directions^T; ``stds`` (p,) are the s_i;
    ``means`` is (n, p) (NumPy arrays).  Returns (M, info) where info holds the truncation order K, the
    Frobenius error bound of the truncation, the quadrature nodes, and the per-feature averages of
    E sigma(h) and E sigma'(h) (``mean_value``, ``mean_derivative``).  Memory: O(p^2 + batch p K) with the
    batch sized from ``memory_budget`` bytes (on the device when there is one).  ``device``: see
    :func:`rfdm.backend.resolve_device`; the correlation blocks, both passes and the bound sums run there,
    M and info come back as NumPy arrays.

    Speed options (the result is the same up to the quadrature's rounding, ~1e-13: the order K, the cut and
    the pairs are chosen by the same bound): ``kmax_first`` is the highest order examined by the first pass
    (default KMAX_FIRST; the pass is redone up to ``kmax_cap`` if the series needs more, so a good guess,
    e.g. the order of a neighbouring diffusion time, saves a pass); with ``cache_budget`` bytes (None: 4 times
    the memory budget; 0, the default: off) the first pass keeps its Hermite coefficients (n p (kcap + 1)
    doubles) when they fit, and pass 2 reuses them instead of recomputing the 1-D quadratures.
    """
    bk = resolve_device(device)
    xp = bk.xp
    act = get_activation(activation)
    p = directions.shape[0]
    n = means.shape[0]
    budget = max(int(memory_budget or DEFAULT_MEMORY_BUDGET), 8 * p * p)
    rows = max(1, min(p, budget // (8 * 4 * p)))
    dirs, means_x, stds_x = bk.asarray(directions), bk.asarray(means), bk.asarray(stds)

    rho_max = 0.0
    for blk in _row_blocks(p, rows):  # blocks are never empty
        rho_max = max(rho_max, float(xp.max(xp.abs(_offdiag_rho_block(dirs, blk)))))
    rho_max = min(rho_max, 1.0)
    rule = act.select_rule(float(np.max(np.abs(means), initial=0.0)), float(np.max(stds)), kmax_cap, rho_max)
    n_nodes = quadrature_rule(rule, kmax_cap)[0].size if rule[0] != "closed-form" else 0
    width = max(n_nodes, kmax_cap + 1)

    # Pass 1: diagonal, per-order energies and tails of the Hermite expansion, averaged over the data.
    # Orders up to ``kmax_cap`` are examined only if the first KMAX_FIRST do not reach the target.
    kcap = max(1, min(int(kmax_first), kmax_cap))
    cache_bytes = 4 * budget if cache_budget is None else int(cache_budget)
    fits = lambda k: 8 * n * p * (k + 1) <= cache_bytes  # noqa: E731
    cache = bk.empty((n, p, kcap + 1)) if fits(kcap) else None
    diag, energy, tail2, mean01 = _hermite_energies(act, means_x, stds_x, kcap, rule, budget, width, cache)
    target = rtol * float(np.linalg.norm(bk.to_numpy(diag)))

    # Smallest order K meeting the target; if the series converges too slowly for the most correlated
    # pairs, those pairs (|rho| > cut) are computed by direct 2-D quadrature instead.
    cuts = [1.0] + [c for c in PAIR_CUTS if c < rho_max]
    choice = _choose_order(dirs, tail2, target, rows, rho_max, cuts[:1])
    if choice is None and kcap < kmax_cap:
        cache = None
        cache = bk.empty((n, p, kmax_cap + 1)) if fits(kmax_cap) else None
        diag, energy, tail2, mean01 = _hermite_energies(act, means_x, stds_x, kmax_cap, rule, budget, width, cache)
        kcap = kmax_cap
    if choice is None:
        choice = _choose_order(dirs, tail2, target, rows, rho_max, cuts)
    if choice is None:
        raise NumericalError(f"the Mehler series did not reach rtol={rtol:g} by order {kcap}, even with the "
                             f"pairs of correlation above {cuts[-1]:g} done by direct quadrature; loosen rtol.")
    order, bound, cut = choice
    pairs = _strong_pairs(dirs, rows, cut) if cut < 1.0 else None
    rho_series = min(cut, rho_max)
    # Orders whose whole contribution is negligible (e.g. even orders of an odd sigma at zero mean).
    weights = rho_series ** np.arange(order + 1) * bk.to_numpy(xp.sum(energy[:, :order + 1], axis=0))
    negligible = weights <= 1e-3 * target / (order + 1)
    negligible[0] = negligible[0] and order > 0
    kept = [k for k in range(order + 1) if not negligible[k]]
    bound += float(np.sum(weights[negligible]))

    # Pass 2: assemble the upper triangle, blocks of rows x Hermite orders, batches of data.
    M = bk.zeros((p, p))
    b2 = max(1, min(n, budget // (8 * p * (len(kept) + 1))))
    sub = max(1, budget // (8 * 2 * p * max(n_nodes, order + 1)))  # quadrature temporaries per sub-batch
    blocks = list(_row_blocks(p, min(rows, PASS2_BLOCK_ROWS) if bk.is_numpy else rows))
    quad = _Quadrature(act, stds_x, order, rule) if cache is None else None
    for s in range(0, n, b2):
        m_b = means_x[s:s + b2]
        coeffs = [bk.empty((p, m_b.shape[0])) for _ in kept]  # (p, batch): contiguous row blocks
        for u in range(0, m_b.shape[0], sub):
            if cache is not None:
                a = cache[s + u:s + u + min(sub, m_b.shape[0] - u)]
            else:
                a, _ = quad(m_b[u:u + sub], second=False)
            for ck, k in zip(coeffs, kept):
                ck[:, u:u + sub] = a[..., k].T
            del a
        if bk.is_numpy:
            _mehler_products_horner(M, dirs, coeffs, kept, blocks)
            continue
        for blk in blocks:
            rho = dirs[blk] @ dirs[blk.start:].T
            power = xp.ones_like(rho)
            k_prev = 0
            for k, ak in zip(kept, coeffs):
                if k > k_prev:
                    power *= rho if k == k_prev + 1 else rho ** (k - k_prev)
                    k_prev = k
                prod = ak[blk] @ ak[blk.start:].T
                prod *= power
                M[blk, blk.start:] += prod
    M /= n
    for blk in blocks:
        M[blk.stop:, blk] = M[blk, blk.stop:].T
        if bk.is_numpy:  # the diagonal block was computed in full: its lower triangle from its upper one
            square = M[blk, blk]
            lower = np.tril_indices(blk.stop - blk.start, -1)
            square[lower] = square.T[lower]
    diagonal = bk.arange(p)
    M[diagonal, diagonal] = diag
    n_pairs = 0
    if pairs is not None and pairs[0].size:
        if pairs[0].size * n * max(n_nodes, 96) ** 2 > MAX_PAIR_WORK:
            raise NumericalError(f"{pairs[0].size} pairs of features have correlation above {cut:g}, too many "
                                 f"to integrate directly; loosen rtol or increase d.")
        vals = bk.asarray(_pair_second_moments(act, means, stds, *pairs, rule))  # on the host
        I, J = bk.asindex(pairs[0]), bk.asindex(pairs[1])
        M[I, J] = vals
        M[J, I] = vals
        n_pairs = int(pairs[0].size)
    M = bk.to_numpy(M)
    mean01 = bk.to_numpy(mean01)
    diag = bk.to_numpy(diag)
    info = {"truncation_order": order, "direct_pairs": n_pairs, "coefficients_cached": cache is not None,
            "first_pass_order": kcap, "direct_pair_cut": cut, "orders_used": kept, "truncation_bound": bound,
            "relative_truncation_bound": bound / max(float(np.linalg.norm(diag)), 1e-300),
            "quadrature_rule": list(rule), "quadrature_nodes": n_nodes, "rho_max": rho_max,
            "mean_value": mean01[:, 0], "mean_derivative": mean01[:, 1] / stds}
    return M, info


def noise_averaged_statistics(features: RandomFeatures, X, t, rtol: float = 1e-10,
                              memory_budget: int | None = None, device=None) -> TrainingStatistics:
    """Exact noise-averaged U, V of the training set X (n x d) at time t (Mehler series + Stein).
    ``device``: where U is assembled (:func:`mehler_second_moment`); U, V are NumPy arrays."""
    t = check_time(t)
    X = features.check_data(X)
    rtol = check_positive_float("rtol", rtol)
    dt = float(delta_t(t))
    directions, wnorm = _unit_rows(features.W)
    stds = math.sqrt(dt / features.d) * wnorm
    means = decay(t) * features.preactivations(X)
    U, info = mehler_second_moment(directions, stds, means, features.activation, rtol, memory_budget,
                                   device=device)
    V = math.sqrt(dt / features.d) * info["mean_derivative"][:, None] * features.W
    return TrainingStatistics(U=U, V=V, t=t, n=X.shape[0], n_draws=None, info=info)


def monte_carlo_statistics(features: RandomFeatures, X, t, n_draws: int, rng, batch_size: int = 256,
                           device=None) -> TrainingStatistics:
    """Monte Carlo U, V with ``n_draws`` noise draws xi per data point (the finite-m setting of [GVM]
    and of the published scripts): U = (1/(n m)) sum phi phi^T, V = (1/(n m)) sum phi xi^T.  The noise is
    drawn on the host from ``rng`` (the same draws on every device); with ``device`` the features and the
    sums run there.  U, V are NumPy arrays."""
    t = check_time(t)
    X = features.check_data(X)
    m = check_positive_int("n_draws", n_draws)
    batch_size = check_positive_int("batch_size", batch_size)
    rng = np.random.default_rng(rng)
    bk = resolve_device(device)
    a, sq = float(decay(t)), math.sqrt(float(delta_t(t)))
    W, Xx = bk.asarray(features.W), bk.asarray(X)
    U = bk.zeros((features.p, features.p))
    V = bk.zeros((features.p, features.d))
    for _ in range(m):
        for s in range(0, X.shape[0], batch_size):
            xb = Xx[s:s + batch_size]
            xi = bk.asarray(rng.standard_normal(tuple(xb.shape)))
            phi = evaluate(features.activation, ((a * xb + sq * xi) @ W.T) / math.sqrt(features.d))
            U += phi.T @ phi
            V += phi.T @ xi
    total = X.shape[0] * m
    return TrainingStatistics(U=bk.to_numpy(U) / total, V=bk.to_numpy(V) / total, t=t, n=X.shape[0], n_draws=m)


def population_statistics(features: RandomFeatures, law, t, rtol: float = 1e-10,
                          memory_budget: int | None = None, device=None) -> PopulationStatistics:
    """Exact population U~, V~, Y at time t for a law whose noised version P_t is an equal-weight mixture
    of Gaussians sharing one covariance (``law.noised_components(t)``: Gaussian data, the two-cluster
    mixture).

    Conditionally on the component, h~ = W y/sqrt(d) is Gaussian with mean W mu_c/sqrt(d) and covariance
    W C_t W^T/d, so U~ is the Mehler series averaged over the components (the components play the part of
    the data points).  Stein's lemma gives V~ = sqrt(Delta_t/d) diag(E sigma'(h~)) W, and, integrating by
    parts against P_t, E[phi(y) S(y)^T] = -E[grad phi] for any law, so Y = diag(E sigma'(h~)) W/sqrt(d).
    ``device``: where U~ is assembled (:func:`mehler_second_moment`); the results are NumPy arrays.
    """
    t = check_time(t)
    rtol = check_positive_float("rtol", rtol)
    if not hasattr(law, "noised_components"):
        raise InvalidParameterError("population statistics are exact only for Gaussian and mixture data laws.")
    if law.d != features.d:
        raise InvalidParameterError(f"the data law has d = {law.d} but the features have d = {features.d}.")
    dt = float(delta_t(t))
    centres, sqrt_cov = law.noised_components(t)
    L = features.W @ sqrt_cov / math.sqrt(features.d)
    directions, stds = _unit_rows(L)
    U, info = mehler_second_moment(directions, stds, features.preactivations(centres), features.activation,
                                   rtol, memory_budget, device=device)
    dmean = info["mean_derivative"]
    Y = dmean[:, None] * features.W / math.sqrt(features.d)
    return PopulationStatistics(U=U, V=math.sqrt(dt) * Y, Y=Y, score_norm=law.score_norm(t), t=t, info=info)
