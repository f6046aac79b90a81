"""The `rfdm sample` and `rfdm regimes` commands (registered by :func:`add_commands`).

Conventions of :mod:`rfdm.cli`: bad input raises InvalidParameterError (one sentence, exit status 2, nothing
written); the output folder is checked before any work; --json prints one JSON object to stdout; progress
goes to stderr.
"""

from __future__ import annotations

import math

from .activations import available_activations
from .cli import _add_device_option, _add_output_options, _emit, check_output_dir, parse_float_list, parse_tau
from .errors import InvalidParameterError

STUDIES = ("none", "two-regimes", "memorization")
DEFAULT_OUT = {"none": "rfdm_results/sample", "two-regimes": "rfdm_results/two_regimes",
               "memorization": "rfdm_results/memorization"}


def add_commands(sub) -> None:
    """Register the `sample` and `regimes` subcommands on an argparse subparsers object."""
    _add_sample(sub)
    _add_regimes(sub)


def _add_time_options(p, T_default: float, steps_default: int):
    p.add_argument("--steps", type=int, default=None, help=f"steps of the backward process (default {steps_default})")
    p.add_argument("--T", type=float, default=None, help=f"start time of the backward process (default {T_default:g})")
    p.add_argument("--t-min", type=float, default=None, help="last diffusion time t_min > 0 (default 0.01)")
    p.add_argument("--grid", default="log-snr", help="time grid: log-snr (uniform in log(e^{2t}-1), default), "
                   "geometric (uniform in log t) or uniform")
    p.add_argument("--integrator", default="euler", help="euler (Euler–Maruyama, default) or exponential "
                   "(exact for the linear part)")


def _add_sample(sub):
    p = sub.add_parser("sample", help="sample with the backward process (exact, empirical or random-features "
                       "score) and measure memorization and the distance to the target.",
                       description="Integrate the backward process from N(0, I) at T down to t_min with a score "
                       "source, then report the memorization fraction (with a bootstrap interval), the mixture "
                       "statistics, the energy distance to the target and, for Gaussian data, the Gaussian KL "
                       "(THEORY §1, §6). --study two-regimes and --study memorization run the talk's two studies.")
    p.add_argument("--score", default=None, help="exact, empirical, rf (default) or rf-time-integrated")
    p.add_argument("--data", default=None, help="gaussian (default), mixture, or FILE.npy (an (n, d) array)")
    p.add_argument("--d", type=int, default=None, help="data dimension (default 16; set by FILE.npy)")
    p.add_argument("--sigma-spectrum", default="1", help="Gaussian data: comma list of covariance eigenvalues")
    p.add_argument("--sigma-weights", default=None, help="Gaussian data: comma list of their weights (sum 1)")
    p.add_argument("--m-norm", type=float, default=None, help="mixture: |m| (fixed as d grows)")
    p.add_argument("--m-tilde", type=float, default=None, help="mixture: |m| = m_tilde sqrt(d) (default 1)")
    p.add_argument("--sigma-x", type=float, default=1.0, help="mixture: standard deviation of each cluster (default 1)")
    p.add_argument("--n-train", type=int, default=None, help="training points (default 64; a FILE.npy: all rows)")
    p.add_argument("--n-samples", type=int, default=None, help="generated samples (default 500)")
    _add_time_options(p, 4.0, 200)
    p.add_argument("--tau", default=None, help="rf: training time tau (a number or inf, default inf); "
                   "--study memorization: a list (default 1:1e8:13,inf)")
    p.add_argument("--psi-p", type=float, default=None, help="rf: p/d (default 16)")
    p.add_argument("--activation", default="tanh", help=f"rf: one of {', '.join(available_activations())}")
    p.add_argument("--rf-times", type=int, default=None, help="rf: number of diffusion times the scores are "
                   "trained at (geometric from t_min to T, default 12)")
    p.add_argument("--rf-scheme", default="interpolate", help="rf: interpolate (default) or nearest between "
                   "training times")
    p.add_argument("--ti-beta", default="none", help="rf-time-integrated: skip term, none (default) or gaussian-skip")
    p.add_argument("--ti-t-law", default="uniform", choices=("uniform", "log-uniform"),
                   help="rf-time-integrated: law Q of the training times on [t-min, T] (default uniform)")
    p.add_argument("--threshold", type=float, default=1.0 / 3.0, help="memorization threshold on nearest/second-"
                   "nearest distance (default 1/3)")
    p.add_argument("--study", default="none", help="none (default), two-regimes or memorization")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    _add_device_option(p)
    p.add_argument("--out", default=None, help="output folder (default rfdm_results/sample, rfdm_results/two_regimes "
                   "or rfdm_results/memorization)")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    p.set_defaults(func=_run_sample)


def _pick(value, default):
    return default if value is None else value


def _single_tau(text):
    if text is None:
        return math.inf
    tau = parse_tau(text)
    if len(tau) != 1:
        raise InvalidParameterError("--tau takes one value for a sampling run (several are for --study memorization).")
    return tau[0]


def _run_sample(args) -> int:
    from .experiments import sampling as exp

    if args.study not in STUDIES:
        raise InvalidParameterError(f"unknown study {args.study!r}: choose one of {', '.join(STUDIES)}.")
    out = args.out or DEFAULT_OUT[args.study]
    if args.study != "none" and (args.score is not None or args.data is not None):
        raise InvalidParameterError(f"--study {args.study} sets its own data and score; drop --data and --score.")
    spectrum = parse_float_list(args.sigma_spectrum, "--sigma-spectrum")
    weights = None if args.sigma_weights is None else parse_float_list(args.sigma_weights, "--sigma-weights")
    common = dict(steps=_pick(args.steps, 200), t_min=_pick(args.t_min, 0.01), grid=args.grid,
                  integrator=args.integrator, seed=args.seed)
    check_output_dir(out)
    if args.study == "two-regimes":
        config = exp.TwoRegimesConfig(d=_pick(args.d, 32), psi_p=_pick(args.psi_p, 16.0), n_train=_pick(args.n_train, 1024),
                                      m_norm=_pick(args.m_norm, 2.0), m_tilde=_pick(args.m_tilde, 2.0),
                                      sigma_x=args.sigma_x, activation=args.activation, tau=_single_tau(args.tau),
                                      rf_times=_pick(args.rf_times, 10), n_samples=_pick(args.n_samples, 2000),
                                      T=_pick(args.T, 4.0), **common)
        result = exp.compute_two_regimes(config, quiet=args.quiet)
        paths = exp.save_two_regimes(result, out)
        summary = exp.two_regimes_summary(result)
    elif args.study == "memorization":
        tau = parse_tau(args.tau) if args.tau is not None else parse_tau("1:1e8:13,inf")
        config = exp.MemorizationConfig(d=_pick(args.d, 8), psi_p=_pick(args.psi_p, 128.0), n_train=_pick(args.n_train, 16),
                                        sigma_spectrum=spectrum, activation=args.activation, tau=tau,
                                        rf_times=_pick(args.rf_times, 12), n_samples=_pick(args.n_samples, 500),
                                        T=_pick(args.T, 4.0), threshold=args.threshold, **common)
        result = exp.compute_memorization(config, quiet=args.quiet)
        paths = exp.save_memorization(result, out)
        summary = exp.memorization_summary(result)
    else:
        data = _pick(args.data, "gaussian")
        if data not in ("gaussian", "mixture") and args.d is not None:
            raise InvalidParameterError("--d is set by the data file; drop --d.")
        config = exp.SampleConfig(score=_pick(args.score, "rf"), data=data, d=_pick(args.d, 16),
                                  sigma_spectrum=spectrum, sigma_weights=weights, m_norm=args.m_norm,
                                  m_tilde=args.m_tilde, sigma_x=args.sigma_x,
                                  n_train=args.n_train if data not in ("gaussian", "mixture") else _pick(args.n_train, 64),
                                  n_samples=_pick(args.n_samples, 500), T=_pick(args.T, 4.0),
                                  tau=_single_tau(args.tau), psi_p=_pick(args.psi_p, 16.0), activation=args.activation,
                                  rf_times=_pick(args.rf_times, 12), rf_scheme=args.rf_scheme, ti_beta=args.ti_beta,
                                  ti_time_law=args.ti_t_law,
                                  threshold=args.threshold, **common)
        result = exp.compute(config, quiet=args.quiet)
        paths = exp.save(result, out)
        summary = exp.json_summary(result)
    _emit(args, summary, paths)
    return 0


def _add_regimes(sub):
    p = sub.add_parser("regimes", help="speciation time t_S, clone-agreement probability phi(t) (formula and "
                       "simulation), collapse time t_C and the simulated collapse onto training points.",
                       description="Regimes of the backward dynamics on the two-cluster mixture (THEORY §6, [B24]): "
                       "t_S = (1/2) log(|m|^2 + sigma_x^2), phi(t) against a clone simulation with the exact score, "
                       "t_C of n training points against a clone simulation with the empirical score.")
    p.add_argument("--d", type=int, default=32, help="data dimension (default 32)")
    p.add_argument("--m-norm", type=float, default=None, help="|m| (fixed as d grows)")
    p.add_argument("--m-tilde", type=float, default=None, help="|m| = m_tilde sqrt(d) (default 1)")
    p.add_argument("--sigma-x", type=float, default=1.0, help="standard deviation of each cluster (default 1)")
    p.add_argument("--n-train", type=int, default=256, help="training points of the empirical score (default 256)")
    p.add_argument("--n-pairs", type=int, default=1000, help="clone pairs for phi (default 1000)")
    p.add_argument("--n-trajectories", type=int, default=400, help="clone pairs for the collapse (default 400)")
    _add_time_options(p, 8.0, 200)
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    _add_device_option(p)
    _add_output_options(p, "regimes")
    p.set_defaults(func=_run_regimes)


def _run_regimes(args) -> int:
    from .experiments import regimes as exp

    check_output_dir(args.out)
    config = exp.RegimesConfig(d=args.d, m_norm=args.m_norm, m_tilde=args.m_tilde, sigma_x=args.sigma_x,
                               n_train=args.n_train, n_pairs=args.n_pairs, n_trajectories=args.n_trajectories,
                               steps=_pick(args.steps, 200), T=_pick(args.T, 8.0), t_min=_pick(args.t_min, 0.01),
                               grid=args.grid, integrator=args.integrator, seed=args.seed)
    result = exp.compute(config, quiet=args.quiet)
    paths = exp.save(result, args.out)
    _emit(args, exp.json_summary(result), paths)
    return 0
