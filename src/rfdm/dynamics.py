"""Training dynamics of the random-features score at one diffusion time t (docs/theory.md §3; [B25] Sec. 3).

The per-dimension denoising loss is quadratic in A,

    L(A) = 1 + (Delta_t/d) Tr(A U A^T)/p + (2 sqrt(Delta_t)/d) Tr(A V)/sqrt(p),

and gradient flow in the paper's time tau = k eta / d^2 (k steps of learning rate eta) is

    dA/dtau = -2 Delta_t (d/p) A U - (2 d sqrt(Delta_t)/sqrt(p)) V^T,

with the closed form A(tau)/sqrt(p) = -(1/sqrt(Delta_t)) V^T U^{-1}(I - e^{-2 Delta_t U tau/psi_p})
+ (A(0)/sqrt(p)) e^{-2 Delta_t U tau/psi_p}.  :class:`GradientFlow` factorises U = Q Lambda Q^T once, then
evaluates every loss at any array of tau (tau = inf is the ridgeless limit) as sums over modes, O(p^2) per
tau.  Mode k relaxes on the timescale psi_p/(Delta_t lambda_k) (the paper's convention, without the 2).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from .backend import resolve_device
from .errors import InvalidParameterError, NumericalError, check_finite_array, check_positive_float, check_positive_int
from .features import PopulationStatistics, RandomFeatures, TrainingStatistics
from .diffusion import check_time, decay, delta_t

#: eigenvalues below this fraction of the largest are treated as the null space of U
NULL_RTOL = 1e-13


def as_tau_array(tau) -> np.ndarray:
    """Validate training times: a scalar or 1-D array of tau >= 0, inf allowed (None means inf)."""
    if tau is None:
        tau = np.inf
    try:
        arr = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    except (TypeError, ValueError):
        raise InvalidParameterError(f"tau must be numbers, got {tau!r}.") from None
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidParameterError("tau must be a scalar or a non-empty 1-D array.")
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        raise InvalidParameterError("tau must be >= 0 (inf allowed), got a negative or NaN value.")
    return arr


def loss_of_weights(A, stats: TrainingStatistics | PopulationStatistics) -> float:
    """Direct evaluation of L(A) = c + (kappa/d) Tr(A U A^T)/p + (2 sqrt(kappa)/d) Tr(A V)/sqrt(p)
    (kappa = Delta_t, c = 1 for the per-time model).  With training statistics this is the train loss;
    with population statistics, the test loss."""
    d, p = A.shape
    kappa = stats.kappa
    return stats.loss_constant + (kappa / d) * np.einsum("ij,ij->", A @ stats.U, A) / p + 2 * math.sqrt(
        kappa) / d * np.einsum("ij,ji->", A, stats.V) / math.sqrt(p)


def score_error_of_weights(A, population: PopulationStatistics) -> float:
    """E_score = (1/d) E|S_A(y) - S(y)|^2 = (1/d)[Tr(A U~ A^T)/p + 2 Tr(A Y)/sqrt(p) + E|S|^2]."""
    d, p = A.shape
    return (np.einsum("ij,ij->", A @ population.U, A) / p + 2 * np.einsum("ij,ji->", A, population.Y)
            / math.sqrt(p) + population.score_norm) / d


#: rows per block of the symmetric rotation Q^T (U' Q) (upper triangle only, then mirrored)
ROTATION_BLOCK = 512


def _rotate_symmetric(bk, Q, T):
    """M = Q^T T for T = U' Q with U' symmetric, so M is symmetric: only the blocks on and above the diagonal
    are multiplied (p^3 flops instead of 2 p^3) and the rest mirrored.  Memory: M and T
    (the same two p x p arrays as the full product Q^T T).  NumPy and torch arrays alike (``bk``)."""
    p = Q.shape[1]
    M = bk.empty((p, p))
    for s in range(0, p, ROTATION_BLOCK):
        blk = slice(s, min(s + ROTATION_BLOCK, p))
        M[blk, s:] = Q[:, blk].T @ T[:, s:]
    for s in range(0, p, ROTATION_BLOCK):
        blk = slice(s, min(s + ROTATION_BLOCK, p))
        M[blk.stop:, blk] = M[blk, blk.stop:].T
    return M


class GradientFlow:
    """Closed-form gradient flow of a random-features score whose loss is quadratic in A.

    The training loss is L(A) = c + (kappa/d) Tr(A U A^T)/p + (2 sqrt(kappa)/d) Tr(A V)/sqrt(p) (per-time
    model: kappa = Delta_t, c = 1), and the flow dA/dtau = -d^2 dL/dA = -2 kappa (d/p) A U
    - (2 d sqrt(kappa)/sqrt(p)) V^T.  U = Q Lambda Q^T is factorised once; with D(tau) = A(tau) Q/sqrt(p)
    = -(1/sqrt(kappa)) B^T diag(g) + A0' diag(e), B = Q^T V, A0' = A(0) Q/sqrt(p),
    g_k = (1 - e^{-2 kappa lambda_k tau/psi_p})/lambda_k, e_k = e^{-2 kappa lambda_k tau/psi_p}, every
    other quadratic form c' + (1/d)[s Tr(A U' A^T)/p + 2 sqrt(s) Tr(A V')/sqrt(p)] (test loss, score error,
    ...) is a quadratic form in (g, e) with precomputed p x p matrices M' o (B B^T) etc., M' = Q^T U' Q:
    O(p^2) per tau.

    Parameters
    ----------
    stats : training statistics (U, V and the loss's kappa, c).
    population : optional population statistics: adds "test_loss" (U~, V~, its kappa and c) and
        "score_error" (U~, Y, scale 1, constant E|S|^2/d).
    A0 : optional initial weights A(0) (d x p); default 0.
    overwrite : let the eigendecomposition overwrite ``stats.U`` (saves p^2 memory).
    device : where the eigendecomposition of U and the O(p^3) rotations Q^T U' Q of the quadratic forms run
        (:func:`rfdm.backend.resolve_device`; default NumPy/SciPy).  Q stays there for later forms; every
        attribute and result is a NumPy array, and the curves are evaluated on the host.
    """

    def __init__(self, stats: TrainingStatistics, population: PopulationStatistics | None = None,
                 A0=None, overwrite: bool = False, device=None):
        U, V = stats.U, stats.V
        p, d = V.shape
        if U.shape != (p, p):
            raise InvalidParameterError(f"U has shape {U.shape} but V has shape {V.shape}.")
        self.p, self.d, self.t = p, d, stats.t
        self.n = getattr(stats, "n", None)
        self.psi_p = p / d
        self.kappa = stats.kappa
        self.constant = stats.loss_constant
        self._bk = bk = resolve_device(device)
        lam, Qx = bk.eigh(U, overwrite=overwrite)  # NumPy: SciPy's MRRR driver, in U's buffer if overwrite
        if overwrite:
            stats.U = None  # its buffer now holds LAPACK workspace (NumPy), or is no longer needed (device)
        lam, Q = bk.to_numpy(lam), bk.to_numpy(Qx)
        self._Qx = Qx  # Q on the device (the same array as Q on NumPy)
        scale = max(float(lam[-1]), 0.0)
        if lam[0] < -1e-10 * max(scale, 1e-300):
            raise NumericalError(f"U is not positive semi-definite: smallest eigenvalue {lam[0]:.3g} "
                                 f"(largest {scale:.3g}).")
        self.eigenvalues = np.clip(lam, 0.0, None)
        self._null = self.eigenvalues <= NULL_RTOL * scale
        self.eigenvectors = Q
        self._B = bk.to_numpy(Qx.T @ bk.asarray(V))  # (p, d): row k is Q_k^T V
        self._c_bb = np.einsum("kj,kj->k", self._B, self._B)
        if A0 is None:
            self._A0 = None
        else:
            A0 = check_finite_array("A0", A0, ndim=2)
            if A0.shape != (d, p):
                raise InvalidParameterError(f"A0 must have shape ({d}, {p}), got {A0.shape}.")
            self._A0 = (A0 @ Q).T / math.sqrt(p)  # (p, d): row k is the mode-k component of A(0)/sqrt(p)
            self._c_ba = np.einsum("kj,kj->k", self._B, self._A0)
            self._c_aa = np.einsum("kj,kj->k", self._A0, self._A0)
        self._forms: dict = {}
        self._rotated: tuple | None = None  # (id of U', M' = Q^T U' Q), reused by forms sharing U'
        if population is not None:
            self.add_population(population)

    @property
    def delta(self) -> float:
        return float(delta_t(self.t))

    # -- quadratic forms -----------------------------------------------------------------------------
    def add_quadratic_form(self, name: str, U, V, scale: float, constant: float) -> None:
        """Register c + (1/d)[s Tr(A U A^T)/p + 2 sqrt(s) Tr(A V)/sqrt(p)] to be evaluated along the flow."""
        if U.shape != (self.p, self.p) or V.shape != (self.p, self.d):
            raise InvalidParameterError(f"the quadratic form {name!r} does not match the training shapes.")
        bk, Q, B = self._bk, self._Qx, self._B
        if self._rotated is None or self._rotated[0] is not U:
            # M' = Q^T U' Q, then the Hadamard products, built in place and shared by every form on U'
            # (on the device of Q; NumPy arrays afterwards)
            Bx = bk.asarray(B)
            M = _rotate_symmetric(bk, Q, bk.asarray(U) @ Q)
            diagonal = bk.arange(self.p)
            mats = {"curvature": bk.to_numpy(M[diagonal, diagonal])}  # q_k^T U' q_k
            if self._A0 is not None:
                A = bk.asarray(self._A0)
                mats["H_ba"] = bk.to_numpy(M * (Bx @ A.T))
                mats["H_aa"] = bk.to_numpy(M * (A @ A.T))
            M *= Bx @ Bx.T
            mats["H_bb"] = bk.to_numpy(M)
            del M
            self._rotated = (U, mats)
        vt = bk.to_numpy(Q.T @ bk.asarray(V))
        form = {"scale": float(scale), "constant": float(constant), "c_bv": np.einsum("kj,kj->k", B, vt),
                **self._rotated[1]}
        if self._A0 is not None:
            form["c_av"] = np.einsum("kj,kj->k", self._A0, vt)
        self._forms[name] = form

    def curvature(self, name: str) -> np.ndarray:
        """q_k^T U' q_k for every eigenvector q_k of U, U' the matrix of the registered form ``name`` (its
        curvature along the training modes; a by-product of the form's rotation Q^T U' Q)."""
        if name not in self._forms:
            raise InvalidParameterError(f"no quadratic form {name!r} (available: {', '.join(self._forms) or 'none'}).")
        return self._forms[name]["curvature"]

    def add_population(self, pop: PopulationStatistics) -> None:
        """Test loss (U~, V~ with the population's kappa and c) and score error (U~, Y, 1, E|S|^2/d)."""
        self.add_quadratic_form("test_loss", pop.U, pop.V, pop.kappa, pop.loss_constant)
        self.add_quadratic_form("score_error", pop.U, pop.Y, 1.0, pop.score_norm / self.d)
        self._rotated = None

    @property
    def population(self):
        return self._forms.get("test_loss")

    # -- mode functions -----------------------------------------------------------------------------
    @property
    def timescales(self) -> np.ndarray:
        """psi_p/(kappa lambda_k) for every mode (inf for the null space of U); per-time model:
        psi_p/(Delta_t lambda_k)."""
        with np.errstate(divide="ignore"):
            return np.where(self._null, np.inf, self.psi_p / (self.kappa * self.eigenvalues))

    def _modes(self, tau):
        """g_k(tau) = (1 - e^{-2 kappa lambda_k tau/psi_p})/lambda_k and e_k(tau) = e^{-2 kappa lambda_k tau/psi_p},
        shape (p, T); expm1 keeps g accurate when lambda tau is tiny; g = 2 kappa tau/psi_p in the null space."""
        tau = as_tau_array(tau)
        lam = self.eigenvalues[:, None]
        rate = 2.0 * self.kappa / self.psi_p
        finite = np.isfinite(tau)
        taus = np.where(finite, tau, 0.0)[None, :]
        x = rate * lam * taus
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(self._null[:, None], rate * taus, -np.expm1(-x) / np.where(lam > 0, lam, 1.0))
        e = np.exp(-x)
        if not np.all(finite):
            inf_g = np.where(self._null, 0.0, 1.0 / np.where(self._null, 1.0, self.eigenvalues))
            g[:, ~finite] = inf_g[:, None]
            e[:, ~finite] = self._null[:, None].astype(float)
        return tau, g, e

    def weights(self, tau=None) -> np.ndarray:
        """A(tau), shape (d, p) (tau = None or inf: the end of training)."""
        tau, g, e = self._modes(tau)
        if tau.size != 1:
            raise InvalidParameterError("weights() takes a single tau.")
        coeff = -(g[:, 0, None] * self._B) / math.sqrt(self.kappa)  # (p, d) mode components of A/sqrt(p)
        if self._A0 is not None:
            coeff += e[:, 0, None] * self._A0
        return math.sqrt(self.p) * (self.eigenvectors @ coeff).T

    def train_loss(self, tau) -> np.ndarray:
        """L_train = c + (1/d)[kappa sum_k lambda_k |D_k|^2 + 2 sqrt(kappa) sum_k <D_k, B_k>], O(p) per tau."""
        _, g, e = self._modes(tau)
        lam, sq = self.eigenvalues[:, None], math.sqrt(self.kappa)
        bb = self._c_bb[:, None]
        quad = g * g * bb / self.kappa
        lin = -g * bb / sq
        if self._A0 is not None:
            quad += -2.0 / sq * g * e * self._c_ba[:, None] + e * e * self._c_aa[:, None]
            lin += e * self._c_ba[:, None]
        return self.constant + (self.kappa * np.sum(lam * quad, axis=0) + 2 * sq * np.sum(lin, axis=0)) / self.d

    def quadratic_form(self, name: str, tau) -> np.ndarray:
        """A registered form along the flow: c + (1/d)[s Tr(D M' D^T) + 2 sqrt(s) Tr(D V'')], D = A Q/sqrt(p)."""
        if name not in self._forms:
            raise InvalidParameterError(f"{name!r} needs statistics that were not given "
                                        f"(available: {', '.join(self._forms) or 'none'}).")
        f = self._forms[name]
        _, g, e = self._modes(tau)
        sq = math.sqrt(self.kappa)
        quad = np.einsum("kt,kt->t", g, f["H_bb"] @ g) / self.kappa
        lin = -np.einsum("kt,k->t", g, f["c_bv"]) / sq
        if self._A0 is not None:
            quad += (-2.0 / sq) * np.einsum("kt,kt->t", g, f["H_ba"] @ e) + np.einsum("kt,kt->t", e, f["H_aa"] @ e)
            lin += np.einsum("kt,k->t", e, f["c_av"])
        return f["constant"] + (f["scale"] * quad + 2 * math.sqrt(f["scale"]) * lin) / self.d

    def test_loss(self, tau) -> np.ndarray:
        """L_test(tau) = c + (1/d)[kappa Tr(D M~ D^T) + 2 sqrt(kappa) Tr(D V~')]."""
        return self.quadratic_form("test_loss", tau)

    def score_error(self, tau) -> np.ndarray:
        """E_score(tau) = (1/d)[Tr(D M~ D^T) + 2 Tr(D Y') + E|S|^2]."""
        return self.quadratic_form("score_error", tau)

    # -- which modes carry the gap ----------------------------------------------------------------------
    def spectral_pieces(self, n: int | None = None) -> dict:
        """The eigenmodes of U (indices into the ascending ``eigenvalues``) split by counting directions, as in
        the spectrum of the Gaussian-equivalent U ~ G G^T/n + b_t^2 W W^T/d + s_t^2 I (docs/theory.md §4):
        from the top, ``rho_2`` the d population modes, ``rho_1`` the n - d memorization modes, ``cluster`` the
        d modes of b_t^2 W W^T/d just above s_t^2, and ``atom`` the p - n - d modes at s_t^2.  When p < n + d the
        pieces below rho_2 take what is left in that order (rho_1 first), so some are empty.  ``n`` defaults
        to the training set's size."""
        n = self.n if n is None else n
        if n is None:
            raise InvalidParameterError("the number of training points n is needed to split the spectrum of U.")
        n = check_positive_int("n", n)
        p, d = self.p, self.d
        counts = {}
        left = p
        counts["rho_2"] = min(d, left)
        left -= counts["rho_2"]
        counts["rho_1"] = min(max(n - d, 0), left)
        left -= counts["rho_1"]
        counts["cluster"] = min(d, left)
        counts["atom"] = left - counts["cluster"]
        out, start = {}, 0
        for name in ("atom", "cluster", "rho_1", "rho_2"):
            out[name] = np.arange(start, start + counts[name])
            start += counts[name]
        return out

    def gap_by_piece(self, tau, pieces: dict | None = None, n: int | None = None,
                     form: str = "test_loss") -> dict:
        """The generalization gap L_test(tau) - L_train(tau) split over groups of eigenmodes of U.

        With D(tau) = A(tau) Q/sqrt(p) in the eigenbasis of U (class docstring), both losses are sums over
        modes k: L_train = c + (1/d) sum_k [kappa lambda_k |D_k|^2 + 2 sqrt(kappa) <D_k, B_k>], and
        L_test = c' + (1/d) sum_k [s (D M' D^T)_kk + 2 sqrt(s) <D_k, (Q^T V')_k>], M' = Q^T U~ Q, whose
        off-diagonal terms are shared evenly between the two modes they couple (the row sums of the
        symmetric form).  Mode k carries gap_k = test_k - train_k; a piece carries the sum over its modes,
        and sum over pieces + (c' - c) = the gap exactly.  Default pieces: :meth:`spectral_pieces` (the atom,
        the cluster of d eigenvalues above s_t^2, rho_1, rho_2; [B25] Sec. 3); ``pieces`` may be any dict of
        disjoint index arrays covering the modes.

        Returns ``tau``, ``pieces`` (name -> contribution at every tau), ``fractions`` (contribution/gap),
        ``constant`` (c' - c), ``total`` (the gap), ``self`` (each piece alone: its own block of the test form
        minus its train loss), ``interaction`` ("P|Q" -> the test form's blocks coupling P and Q, both orders;
        pieces[P] = self[P] + (1/2) sum_Q interaction[P|Q]), ``counts`` and ``eigenvalue_range`` of every
        piece."""
        if form not in self._forms:
            raise InvalidParameterError(f"{form!r} needs statistics that were not given "
                                        f"(available: {', '.join(self._forms) or 'none'}).")
        if pieces is None:
            pieces = self.spectral_pieces(n)
        idx = {}
        seen = np.zeros(self.p, int)
        for name, ix in pieces.items():
            ix = np.asarray(ix, dtype=np.int64).ravel()
            if ix.size and (ix.min() < 0 or ix.max() >= self.p):
                raise InvalidParameterError(f"piece {name!r} has mode indices outside 0..{self.p - 1}.")
            seen[ix] += 1
            idx[name] = ix
        if np.any(seen != 1):
            raise InvalidParameterError("the pieces must cover every mode of U exactly once.")
        per_mode = self._gap_per_mode(form, tau)
        tau = as_tau_array(tau)
        f = self._forms[form]
        constant = f["constant"] - self.constant
        contrib = {name: per_mode[ix].sum(axis=0) for name, ix in idx.items()}
        total = sum(contrib.values()) + constant
        with np.errstate(divide="ignore", invalid="ignore"):
            fractions = {name: np.where(total != 0, v / total, np.nan) for name, v in contrib.items()}
        ranges = {name: ([float(self.eigenvalues[ix].min()), float(self.eigenvalues[ix].max())] if ix.size else None)
                  for name, ix in idx.items()}
        own, pair = self._piece_interactions(form, tau, idx)
        return {"tau": tau, "pieces": contrib, "fractions": fractions, "constant": constant, "total": total,
                "self": own, "interaction": pair,
                "counts": {name: int(ix.size) for name, ix in idx.items()}, "eigenvalue_range": ranges}

    def _piece_interactions(self, form: str, tau, idx: dict):
        """Self terms (the gap of each piece alone: its diagonal block of the test form, its linear term, minus
        its train loss) and interactions (the off-diagonal blocks of the test form between two pieces, both
        orders).  pieces[P] = self[P] + (1/2) sum_Q interaction[P, Q]; interactions are keyed "P|Q"."""
        f = self._forms[form]
        _, g, e = self._modes(tau)
        sq, scale = math.sqrt(self.kappa), f["scale"]
        names = list(idx)

        def block(P, Q):  # the quadratic part of the test form between pieces P (rows) and Q (columns)
            ip, iq = idx[P], idx[Q]
            val = np.einsum("kt,kt->t", g[ip], f["H_bb"][np.ix_(ip, iq)] @ g[iq]) / self.kappa
            if self._A0 is not None:
                c_pq = np.einsum("kt,kt->t", g[ip], f["H_ba"][np.ix_(ip, iq)] @ e[iq])
                c_qp = np.einsum("kt,kt->t", g[iq], f["H_ba"][np.ix_(iq, ip)] @ e[ip])
                aa = np.einsum("kt,kt->t", e[ip], f["H_aa"][np.ix_(ip, iq)] @ e[iq])
                val = val + (-1.0 / sq) * (c_pq + c_qp) + aa
            return scale * val / self.d

        per_mode = self._gap_per_mode(form, tau)
        own, pair = {}, {}
        for a, P in enumerate(names):
            ip = idx[P]
            cross = sum((block(P, Q) for Q in names if Q != P), np.zeros(g.shape[1]))
            own[P] = per_mode[ip].sum(axis=0) - cross
            for Q in names[a + 1:]:
                pair[f"{P}|{Q}"] = block(P, Q) + block(Q, P)
        return own, pair

    def _gap_per_mode(self, form: str, tau) -> np.ndarray:
        """test_k - train_k for every mode k and tau, shape (p, T) (constants excluded)."""
        f = self._forms[form]
        _, g, e = self._modes(tau)
        lam, sq, ss = self.eigenvalues[:, None], math.sqrt(self.kappa), math.sqrt(f["scale"])
        bb = self._c_bb[:, None]
        tr_quad = g * g * bb / self.kappa
        tr_lin = -g * bb / sq
        te_quad = g * (f["H_bb"] @ g) / self.kappa
        te_lin = -g * f["c_bv"][:, None] / sq
        if self._A0 is not None:
            tr_quad += -2.0 / sq * g * e * self._c_ba[:, None] + e * e * self._c_aa[:, None]
            tr_lin += e * self._c_ba[:, None]
            cross = 0.5 * (g * (f["H_ba"] @ e) + e * (f["H_ba"].T @ g))
            te_quad += (-2.0 / sq) * cross + e * (f["H_aa"] @ e)
            te_lin += e * f["c_av"][:, None]
        train = (self.kappa * lam * tr_quad + 2 * sq * tr_lin) / self.d
        test = (f["scale"] * te_quad + 2 * ss * te_lin) / self.d
        return test - train

    def curves(self, tau) -> dict:
        """All losses at the training times ``tau``: tau, train_loss, every registered form (test_loss,
        score_error, ...) and, with a test loss, generalization_gap (test - train)."""
        tau = as_tau_array(tau)
        out = {"tau": tau, "train_loss": self.train_loss(tau)}
        for name in self._forms:
            out[name] = self.quadratic_form(name, tau)
        if "test_loss" in out:
            out["generalization_gap"] = out["test_loss"] - out["train_loss"]
        return out


# -- step-by-step training (the published procedure), for cross-checks and finite-m training ------------

def max_stable_learning_rate(stats: TrainingStatistics, lam_max: float | None = None) -> float:
    """eta_max = d p / (kappa lambda_max(U)) (kappa = Delta_t for the per-time model): gradient descent on L is
    stable for eta < eta_max.  Pass ``lam_max`` when the spectrum of U is already known."""
    if lam_max is None:
        lam_max = float(scipy.linalg.eigvalsh(stats.U, subset_by_index=[stats.U.shape[0] - 1] * 2)[0])
    return stats.V.shape[1] * stats.V.shape[0] / (stats.kappa * lam_max)


def descend(draw, A0, learning_rate: float, steps, optimizer: str = "gd", betas=(0.9, 0.999),
            eps: float = 1e-8, callback=None):
    """Full-batch gradient descent (or Adam) on a denoising loss of the form
    L(A) = (1/(N d)) sum_i |k_i phi_i A^T/sqrt(p) + r_i|^2, where each step calls ``draw()`` for a fresh
    batch (phi (N, p), k (N,) or scalar, r (N, d)).  The gradient is explicit:
    dL/dA = (2/(N d sqrt(p))) (k R)^T phi with R = k phi A^T/sqrt(p) + r.
    Returns the weights after each number of steps in ``steps`` and the mean seconds per step."""
    import time

    if optimizer not in ("gd", "adam"):
        raise InvalidParameterError(f"optimizer must be 'gd' or 'adam', got {optimizer!r}.")
    A = A0.copy()
    d, p = A.shape
    m1 = np.zeros_like(A)
    m2 = np.zeros_like(A)
    order = np.argsort(steps, kind="stable")
    out = [None] * len(steps)
    k = 0
    t0 = time.perf_counter()
    for idx in order:
        while k < steps[idx]:
            phi, kap, r = draw()
            kap = np.broadcast_to(np.asarray(kap, dtype=float), (phi.shape[0],))[:, None]
            R = kap * (phi @ A.T) / math.sqrt(p) + r
            grad = (2.0 / (phi.shape[0] * d * math.sqrt(p))) * ((kap * R).T @ phi)
            k += 1
            if optimizer == "gd":
                A -= learning_rate * grad
            else:
                m1 = betas[0] * m1 + (1 - betas[0]) * grad
                m2 = betas[1] * m2 + (1 - betas[1]) * grad * grad
                A -= learning_rate * (m1 / (1 - betas[0] ** k)) / (np.sqrt(m2 / (1 - betas[1] ** k)) + eps)
            if callback is not None:
                callback(k)
        out[idx] = A.copy()
    elapsed = time.perf_counter() - t0
    return out, elapsed / max(int(np.max(steps, initial=0)), 1)


def checkpoint_steps(tau_checkpoints, learning_rate: float, d: int, max_steps: int) -> np.ndarray:
    """Steps k = round(tau d^2/eta) reaching each tau (tau = k eta/d^2); validates tau and the budget."""
    taus = as_tau_array(tau_checkpoints)
    if not np.all(np.isfinite(taus)):
        raise InvalidParameterError("step-by-step training cannot reach tau = inf; give finite tau.")
    steps = np.rint(taus * d * d / learning_rate).astype(np.int64)
    if steps.max(initial=0) > max_steps:
        raise InvalidParameterError(f"reaching tau = {taus.max():g} needs {steps.max()} steps at learning rate "
                                    f"{learning_rate:g}, more than max_steps = {max_steps}.")
    return steps


def train_by_descent(features: RandomFeatures, X, t, tau_checkpoints, learning_rate: float,
                     rng, optimizer: str = "gd", n_draws: int | None = None, A0=None,
                     betas=(0.9, 0.999), eps: float = 1e-8, max_steps: int = 10_000_000,
                     callback=None):
    """Full-batch gradient descent (or Adam) on the per-time denoising loss at time t.

    Each step draws noise xi for every training point (``n_draws=None``: fresh noise every step, the
    published procedure; ``n_draws=m``: m draws per point fixed once, the finite-m loss of [GVM]),
    forms x_t = e^{-t} x + sqrt(Delta_t) xi, and steps along the explicit gradient (:func:`descend` with
    k = sqrt(Delta_t), r = xi).  Time is converted to tau = k eta / d^2 (for Adam this is nominal: Adam
    rescales the step).  Returns (tau_reached, list of A at each checkpoint, seconds per step).
    """
    t = check_time(t)
    X = features.check_data(X)
    lr = check_positive_float("learning_rate", learning_rate)
    if optimizer not in ("gd", "adam"):
        raise InvalidParameterError(f"optimizer must be 'gd' or 'adam', got {optimizer!r}.")
    n, d = X.shape
    p = features.p
    steps = checkpoint_steps(tau_checkpoints, lr, d, max_steps)
    rng = np.random.default_rng(rng)
    a_t, sq = float(decay(t)), math.sqrt(float(delta_t(t)))
    A = np.zeros((d, p)) if A0 is None else check_finite_array("A0", A0, ndim=2)
    if A.shape != (d, p):
        raise InvalidParameterError(f"A0 must have shape ({d}, {p}), got {A.shape}.")
    if n_draws is not None:
        m = check_positive_int("n_draws", n_draws)
        xi_fixed = rng.standard_normal((m, n, d))
        phi_fixed = features(a_t * X[None] + sq * xi_fixed).reshape(m * n, p)
        xi_fixed = xi_fixed.reshape(m * n, d)

        def draw():
            return phi_fixed, sq, xi_fixed
    else:
        def draw():
            xi = rng.standard_normal((n, d))
            return features(a_t * X + sq * xi), sq, xi
    weights, step_seconds = descend(draw, A, lr, steps, optimizer, betas, eps, callback)
    return steps * lr / (d * d), weights, step_seconds
