"""Activations and one-dimensional Gaussian expectations (docs/theory.md §2).

The noise averages of the random features reduce, by Mehler's formula, to the normalised Hermite
coefficients of sigma along a one-dimensional Gaussian,

    a_k(m, s) = E[sigma(m + s z) He_k(z)] / sqrt(k!) = s^k E[sigma^{(k)}(m + s z)] / sqrt(k!),   z ~ N(0, 1),

(the second form by k integrations by parts, i.e. Stein's lemma), and to the second moment
E[sigma(m + s z)^2].  The default computes both by Gauss–Hermite quadrature of sigma itself (no
derivative needed), with a node count checked for convergence; an activation may override them with
closed forms (ReLU does, since quadrature of a kink converges slowly).

To add an activation, subclass :class:`Activation` (implement ``__call__`` and, for ``derivative``,
``_derivative``) and call :func:`register_activation`, or use :meth:`Activation.from_function`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from .backend import backend_of, elementwise
from .errors import InvalidParameterError, NumericalError

_SQRT_2PI = math.sqrt(2.0 * math.pi)


@lru_cache(maxsize=64)
def gauss_hermite(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss–Hermite rule for E f(z), z ~ N(0, 1) (weights sum to 1)."""
    z, w = hermegauss(n_nodes)
    return z, w / _SQRT_2PI


@lru_cache(maxsize=64)
def gaussian_trapezoid(step: float, half_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoidal rule for E f(z), z ~ N(0, 1), on the grid z = j*step, |z| <= half_width.

    For f analytic in the strip |Im z| < a its error decays like exp(-2 pi a / step); Gauss–Hermite
    wastes its nodes in the tails and converges far more slowly when a is small (tanh at large std).
    """
    m = int(math.ceil(half_width / step))
    z = step * np.arange(-m, m + 1)
    return z, step * np.exp(-0.5 * z * z) / _SQRT_2PI


def quadrature_rule(rule, kmax: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ``rule``: ("gauss-hermite", n) or ("trapezoid", step)."""
    kind, param = rule
    if kind == "gauss-hermite":
        return gauss_hermite(int(param))
    # Beyond |z| = sqrt(4k+2) the Hermite function h_k(z) e^{-z^2/4} decays like a Gaussian tail.
    return gaussian_trapezoid(float(param), math.sqrt(4 * kmax + 2) + 8.0)


def _mean_std(mean, std):
    """Broadcast mean and std (NumPy arrays or torch tensors); both must be finite and std > 0."""
    bk = backend_of(mean, std)
    xp = bk.xp
    mean, std = xp.broadcast_arrays(bk.asarray(mean), bk.asarray(std))
    if not (bool(xp.all(xp.isfinite(mean))) and bool(xp.all(xp.isfinite(std))) and bool(xp.all(std > 0))):
        raise InvalidParameterError("Gaussian expectations need finite means and stds > 0.")
    return mean, std


def normalized_hermite(z, kmax: int) -> np.ndarray:
    """h_k(z) = He_k(z)/sqrt(k!) for k = 0..kmax, shape z.shape + (kmax+1,), by the stable recurrence
    h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k+1).  Runs where z lives (NumPy or torch)."""
    bk = backend_of(z)
    z = bk.asarray(z)
    out = bk.empty(tuple(z.shape) + (kmax + 1,))
    out[..., 0] = 1.0
    if kmax >= 1:
        out[..., 1] = z
    for k in range(1, kmax):
        out[..., k + 1] = (z * out[..., k] - math.sqrt(k) * out[..., k - 1]) / math.sqrt(k + 1)
    return out


@lru_cache(maxsize=64)
def _hermite_weight_matrix(rule, kmax: int) -> np.ndarray:
    z, w = quadrature_rule(rule, kmax)
    return w[:, None] * normalized_hermite(z, kmax)


def evaluate(act, x, inplace: bool = False):
    """sigma(x) for a NumPy array or a torch tensor.  Activations with ``array_api = True`` (the built-in
    ones) run where x lives; the others (NumPy-only, e.g. :meth:`Activation.from_function`) via the host."""
    if act.array_api or isinstance(x, np.ndarray):
        return act.evaluate_inplace(x) if inplace else act(x)
    bk = backend_of(x)
    return bk.asarray(act(bk.to_numpy(x)))


class Activation:
    """A pointwise activation sigma with the Gaussian expectations the feature statistics need."""

    name = "custom"
    #: whether __call__, evaluate_inplace and gaussian_coefficients accept torch tensors (rfdm.backend);
    #: if not, device computations evaluate this activation on the host
    array_api = False
    #: points where sigma is not smooth (quadratures split there)
    kinks: tuple = ()
    #: quadrature rules tried, in order, by the convergence check; each is compared with the next
    #: rule of the same kind
    rule_ladder = (("gauss-hermite", 16), ("gauss-hermite", 24), ("gauss-hermite", 32),
                   ("gauss-hermite", 48), ("gauss-hermite", 64), ("gauss-hermite", 96),
                   ("trapezoid", 0.3), ("trapezoid", 0.2), ("trapezoid", 0.14), ("trapezoid", 0.1),
                   ("trapezoid", 0.07), ("trapezoid", 0.05))
    #: target agreement between two successive rungs of the ladder
    quadrature_tol = 1e-13

    def __call__(self, x):
        raise NotImplementedError

    def evaluate_inplace(self, x: np.ndarray) -> np.ndarray:
        """sigma(x), allowed to overwrite the float64 array ``x`` (saves memory in the quadrature)."""
        return self(x)

    def derivative(self, x, order: int = 1):
        """sigma^{(order)}(x) (pointwise), for the orders the activation supports."""
        if order == 0:
            return self(x)
        return self._derivative(np.asarray(x, dtype=np.float64), order)

    def _derivative(self, x, order):
        raise InvalidParameterError(f"activation {self.name!r} does not provide derivative order {order}.")

    # -- one-dimensional Gaussian expectations ------------------------------------------------------
    def gaussian_coefficients(self, mean, std, kmax: int, rule=None):
        """Return (a, second): a[..., k] = E[sigma(m + s z) He_k(z)]/sqrt(k!) for k <= kmax, and
        second = E[sigma(m + s z)^2], for broadcastable ``mean`` and ``std`` (std > 0).

        Default: quadrature of sigma with ``rule`` (see :func:`quadrature_rule`; chosen by
        :meth:`select_rule` when None).  Runs where ``mean`` lives (NumPy, or torch for ``array_api``
        activations).
        """
        mean, std = _mean_std(mean, std)
        bk = backend_of(mean)
        if rule is None:
            rule = self.select_rule(np.max(np.abs(bk.to_numpy(mean)), initial=0.0),
                                    np.max(bk.to_numpy(std), initial=0.0), kmax)
        z, w = quadrature_rule(rule, kmax)
        z, w, H = bk.asarray(z), bk.asarray(w), bk.asarray(_hermite_weight_matrix(rule, kmax))
        f = std[..., None] * z
        f += mean[..., None]
        f = evaluate(self, f, inplace=True).reshape(-1, z.shape[0])  # one 2-D GEMM (a stacked matmul is far slower)
        a = (f @ H).reshape(tuple(mean.shape) + (kmax + 1,))
        f *= f
        return a, (f @ w).reshape(mean.shape)

    def select_rule(self, mean_absmax: float, std_max: float, kmax: int, rho_max: float = 1.0):
        """First rule of ``rule_ladder`` whose results agree with the next rule of the same kind to
        ``quadrature_tol``, on a grid of means in [-mean_absmax, mean_absmax] and stds up to ``std_max``.

        Coefficient k enters an off-diagonal entry of U multiplied by rho^k, |rho| <= ``rho_max`` (the
        largest correlation of two pre-activations), so its error is weighted by rho_max^k; the second
        moment (the diagonal) has weight 1.  Raises NumericalError if no rule converges.
        """
        means = np.linspace(-mean_absmax, mean_absmax, 9) if mean_absmax > 0 else np.zeros(1)
        stds = np.array([std_max, 0.5 * std_max, 0.1 * std_max])
        m, s = np.meshgrid(means, stds)
        weight = float(rho_max) ** np.arange(kmax + 1)
        prev = None
        for rule in self.rule_ladder:
            if rule[0] == "gauss-hermite" and rule[1] <= kmax // 2:
                continue
            a, sec = Activation.gaussian_coefficients(self, m, s, kmax, rule=rule)
            cur = np.concatenate([(a * weight).ravel(), sec.ravel()])
            if prev is not None and prev[0][0] == rule[0]:
                scale = max(1.0, float(np.max(np.abs(cur))))
                if np.max(np.abs(cur - prev[1])) <= self.quadrature_tol * scale:
                    return prev[0]
            prev = (rule, cur)
        raise NumericalError(f"quadrature for activation {self.name!r} did not converge "
                             f"(std {std_max:g}, |mean| {mean_absmax:g}).")

    @staticmethod
    def from_function(name: str, function, derivative=None) -> "Activation":
        """Wrap a vectorised function (and optionally its first derivative) as an Activation whose
        Gaussian expectations use the default quadrature."""

        class _Custom(Activation):
            def __call__(self, x):
                return function(np.asarray(x, dtype=np.float64))

            def _derivative(self, x, order):
                if order == 1 and derivative is not None:
                    return derivative(x)
                return super()._derivative(x, order)

        obj = _Custom()
        obj.name = name
        return obj


class Tanh(Activation):
    """sigma = tanh; derivatives as polynomials in T = tanh x: T' = 1 - T^2 (applied by the chain rule)."""

    name = "tanh"
    array_api = True

    def __call__(self, x):
        return elementwise("tanh", x)

    def evaluate_inplace(self, x):
        return elementwise("tanh", x, out=x)

    def _derivative(self, x, order):
        # d/dx P(T) = P'(T) (1 - T^2): iterate on polynomial coefficients in T.
        poly = np.polynomial.Polynomial([0.0, 1.0])
        one_minus_t2 = np.polynomial.Polynomial([1.0, 0.0, -1.0])
        for _ in range(order):
            poly = poly.deriv() * one_minus_t2
        return poly(np.tanh(x))


class Erf(Activation):
    """sigma = erf; sigma^{(k)}(x) = (2/sqrt(pi)) (-1)^{k-1} H_{k-1}(x) e^{-x^2} (physicists' Hermite)."""

    name = "erf"
    array_api = True

    def __call__(self, x):
        return elementwise("erf", x)

    def evaluate_inplace(self, x):
        return elementwise("erf", x, out=x)

    def _derivative(self, x, order):
        from numpy.polynomial.hermite import hermval
        c = np.zeros(order)
        c[-1] = 1.0
        return 2.0 / math.sqrt(math.pi) * (-1) ** (order - 1) * hermval(x, c) * np.exp(-x * x)


class ReLU(Activation):
    """sigma = max(0, x), with closed-form Gaussian expectations (quadrature of the kink converges slowly).

    With u = m/s, phi and Phi the standard normal density and CDF:
      a_0 = m Phi(u) + s phi(u),  a_1 = s Phi(u),  a_k = s He_{k-2}(-u) phi(u)/sqrt(k!) for k >= 2,
      E[sigma^2] = (m^2 + s^2) Phi(u) + m s phi(u).
    (From s^k E[sigma^{(k)}] with sigma'' = delta and E[delta^{(j)}(h)] = He_j(-u) phi(u)/s^{j+1}.)
    """

    name = "relu"
    kinks = (0.0,)
    array_api = True

    def __call__(self, x):
        return elementwise("relu", x)

    def _derivative(self, x, order):
        if order == 1:
            return (x > 0).astype(np.float64)
        return np.zeros_like(x)  # almost everywhere; the Gaussian expectations use the distributional form

    def gaussian_coefficients(self, mean, std, kmax, rule=None):
        mean, std = _mean_std(mean, std)
        bk = backend_of(mean)
        u = mean / std
        pdf = elementwise("exp", -0.5 * u * u) / _SQRT_2PI
        cdf = elementwise("ndtr", u)
        a = bk.empty(tuple(mean.shape) + (kmax + 1,))
        a[..., 0] = mean * cdf + std * pdf
        if kmax >= 1:
            a[..., 1] = std * cdf
        if kmax >= 2:
            he = normalized_hermite(-u, kmax - 2)  # He_j/sqrt(j!)
            j = np.arange(kmax - 1)
            # He_j/sqrt(k!) with k = j + 2  ->  h_j sqrt(j!/k!) = h_j / sqrt((j+1)(j+2))
            a[..., 2:] = (std * pdf)[..., None] * he / bk.asarray(np.sqrt((j + 1.0) * (j + 2.0)))
        second = (mean * mean + std * std) * cdf + mean * std * pdf
        return a, second

    def select_rule(self, mean_absmax, std_max, kmax, rho_max=1.0):
        return ("closed-form", 0)


class Linear(Activation):
    """sigma(x) = x: a_0 = m, a_1 = s, a_k = 0 for k >= 2, E[sigma^2] = m^2 + s^2."""

    name = "linear"
    array_api = True

    def __call__(self, x):
        return backend_of(x).asarray(x)

    def _derivative(self, x, order):
        return np.ones_like(x) if order == 1 else np.zeros_like(x)

    def gaussian_coefficients(self, mean, std, kmax, rule=None):
        mean, std = _mean_std(mean, std)
        a = backend_of(mean).zeros(tuple(mean.shape) + (kmax + 1,))
        a[..., 0] = mean
        if kmax >= 1:
            a[..., 1] = std
        return a, mean * mean + std * std

    def select_rule(self, mean_absmax, std_max, kmax, rho_max=1.0):
        return ("closed-form", 0)


_REGISTRY: dict[str, Activation] = {}


def register_activation(activation: Activation) -> Activation:
    """Make ``activation`` available by its name (CLI ``--activation`` and :func:`get_activation`)."""
    _REGISTRY[activation.name] = activation
    return activation


for _act in (Tanh(), Erf(), ReLU(), Linear()):
    register_activation(_act)


def available_activations() -> list[str]:
    return sorted(_REGISTRY)


def get_activation(activation) -> Activation:
    """Return the Activation for a name (or pass an Activation through)."""
    if isinstance(activation, Activation):
        return activation
    try:
        return _REGISTRY[str(activation)]
    except KeyError:
        raise InvalidParameterError(f"unknown activation {activation!r}; choose one of "
                                    f"{', '.join(available_activations())}.") from None
