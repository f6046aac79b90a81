"""Fields shared by several experiment configurations, declared once (rfdm.protocol), and the time-integrated
model's options as a config mixin."""

from __future__ import annotations

from dataclasses import dataclass

from ..activations import available_activations
from ..diffusion import DEFAULT_GRID, DEFAULT_INTEGRATOR, TIME_GRIDS, INTEGRATORS
from ..protocol import (POSITIVE, POSITIVE_INT, RATIO, SEED, TOLERANCE, Config, FloatList, Integer, OneOf, Real,
                        WeightsSumToOne, WholeTimes, param)
from ..time_integrated import BETAS, TIME_LAWS, TimeIntegratedModel, check_time_window

ACTIVATION = OneOf(available_activations)


#: the backward process starts at T <= T_MAX: e^{-T} < 2e-22 there, and e^{2T} stays far from overflow; every
#: diffusion time is bounded by it
T_MAX = 50.0
#: the most quadrature nodes in t (the time-integrated model): 2^13 + 1 Clenshaw–Curtis nodes
MAX_T_NODES = 8193
TIME = Real(0.0, T_MAX, lo_open=True)


def d_field(default: int, help: str = "data dimension", **kw):
    return param(default, help, check=POSITIVE_INT, **kw)


def psi_field(default: float, which: str, of: str = "d", **kw):
    """psi_p = p/d or psi_n = n/d (p or n = psi * d must be whole)."""
    what = {"p": "number of features p", "n": "number of training points n"}[which]
    return param(default, f"{what} / d", label=f"psi_{which}", check=(POSITIVE, WholeTimes(of)), **kw)


def t_field(default: float = 0.01, help: str = "diffusion time t > 0", **kw):
    return param(default, help, unit="OU time", check=TIME, **kw)


def activation_field(help: str = "activation sigma of the features", **kw):
    return param("tanh", help, check=ACTIVATION, label="activation", **kw)


def seed_field(help: str = "seed of every random draw", **kw):
    return param(0, help, check=SEED, sweep=False, **kw)


def sigma_spectrum_field(help: str = "covariance eigenvalues of the Gaussian data", **kw):
    return param(factory=lambda: (1.0,), help=help, check=FloatList(Real(0.0, lo_open=True)),
                 label="covariance eigenvalues", parse="floats", **kw)


def sigma_weights_field(help: str = "weights of the covariance eigenvalues (sum 1; default equal)", **kw):
    return param(None, help, optional=True, check=WeightsSumToOne("sigma_spectrum"), label="covariance weights",
                 parse="floats", sweep=False, **kw)


def grid_field(**kw):
    return param(DEFAULT_GRID, "time grid of the backward process: log-snr (uniform in log(e^{2t}-1)), "
                 "geometric (uniform in log t) or uniform", check=OneOf(TIME_GRIDS), label="time grid", **kw)


def integrator_field(**kw):
    return param(DEFAULT_INTEGRATOR, "euler (Euler–Maruyama) or exponential (exact for the linear part)",
                 check=OneOf(INTEGRATORS), label="integrator", **kw)


def steps_field(default: int = 200, **kw):
    return param(default, "steps of the backward process", check=POSITIVE_INT, label="steps", **kw)




def T_field(default: float, **kw):
    return param(default, "start time T of the backward process", unit="OU time",
                 check=TIME, **kw)


def denoise_field(**kw):
    return param(True, "end the backward process with the final denoising step x0 = e^t (x + Delta_t S(x, t)) at "
                 "t_min (Tweedie, as score_sde and EDM do); metrics then compare with the same step applied to exact "
                 "draws of P_t_min (docs/theory.md §6)", label="denoise", **kw)


def t_min_field(default: float = 0.01, help: str = "last diffusion time t_min > 0", **kw):
    return param(default, help, unit="OU time", check=TIME, **kw)


@dataclass
class TimeIntegratedFields(Config):
    """The options of the time-integrated model (one network for all t ~ Q on [t_min, t_max]); a mixin of the
    configs that can run it.  Validation: :meth:`check_time_integrated` (called by the subclass's check)."""

    t_min: float = t_min_field(0.01, "time-integrated: smallest diffusion time")
    t_max: float = param(2.0, "time-integrated: largest diffusion time", unit="OU time", check=TIME)
    beta: str = param("none", "time-integrated: skip term beta_t x (none, or -x/Gamma_t^2)", check=OneOf(BETAS))
    time_law: str = param("uniform", "time-integrated: law Q of the diffusion time on [t-min, t-max] (uniform "
                          "in t, or in log t)", check=OneOf(TIME_LAWS), label="time law", flag="--t-law")
    t_rtol: float = param(1e-5, "time-integrated: relative tolerance of the quadrature in t", check=TOLERANCE,
                          label="t quadrature tolerance", flag="--t-quad-tol")
    t_nodes_max: int = param(65, "time-integrated: most quadrature nodes in t (at least 9: the first two "
                             "Clenshaw–Curtis levels)", check=Integer(9, MAX_T_NODES), label="t-nodes-max")

    def check_time_integrated(self) -> None:
        self.t_min, self.t_max = check_time_window(self.t_min, self.t_max)

    def sample_model(self, features, rng, sigma_x2: float) -> TimeIntegratedModel:
        """The model with these options, b drawn from ``rng``."""
        return TimeIntegratedModel.sample(features, rng, t_min=self.t_min, t_max=self.t_max, beta=self.beta,
                                          time_law=self.time_law, sigma_x2=sigma_x2, t_rtol=self.t_rtol,
                                          t_nodes_max=self.t_nodes_max)


__all__ = ["ACTIVATION", "RATIO", "TimeIntegratedFields", "T_MAX", "d_field", "psi_field", "t_field",
           "activation_field", "seed_field", "sigma_spectrum_field", "sigma_weights_field", "grid_field",
           "integrator_field", "steps_field", "T_field", "t_min_field"]
