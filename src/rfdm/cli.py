"""The `rfdm` command line.  Bad input: one sentence on stderr and exit status 2, nothing written.
Numerical trouble: one sentence and exit status 3."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .activations import available_activations
from .errors import InvalidParameterError, NumericalError, RfdmError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one sentence, exit 2 (argparse's default prints the whole usage)
        raise InvalidParameterError(f"{message} (see `{self.prog} --help`).")


def parse_float_list(text: str, name: str) -> tuple:
    """'1,2.5,4' -> (1.0, 2.5, 4.0)."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InvalidParameterError(f"{name} must be a comma-separated list of numbers, got {text!r}.") from None
    if not values:
        raise InvalidParameterError(f"{name} is empty.")
    return values


def parse_tau(text: str, name: str = "--tau") -> tuple:
    """Times: comma-separated items, each a number, 'inf', or a log range START:STOP:NUM (NUM values
    log-spaced from START to STOP), e.g. '1e-1:1e6:200,inf'."""
    out = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        if ":" in item:
            parts = item.split(":")
            try:
                start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
                if len(parts) != 3:
                    raise ValueError
            except (ValueError, IndexError):
                raise InvalidParameterError(f"a {name} range must be START:STOP:NUM, got {item!r}.") from None
            if not (start > 0 and stop > 0 and num >= 1 and math.isfinite(start) and math.isfinite(stop)):
                raise InvalidParameterError(f"a {name} range needs 0 < START, STOP < inf and NUM >= 1, got {item!r}.")
            out.extend(np.logspace(math.log10(start), math.log10(stop), num).tolist())
        else:
            try:
                out.append(float(item))
            except ValueError:
                raise InvalidParameterError(f"{name} values must be numbers, 'inf' or START:STOP:NUM, got {item!r}.") from None
    if not out:
        raise InvalidParameterError(f"{name} is empty.")
    if any(math.isnan(x) or x < 0 for x in out):
        raise InvalidParameterError(f"{name} values must be >= 0.")
    return tuple(out)


def check_output_dir(out: str) -> None:
    """The output folder must be a folder (or not exist yet) and writable, checked before any work."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InvalidParameterError(f"--out {out} exists and is not a folder.")
    parent = next((q for q in (path, *path.parents) if q.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise InvalidParameterError(f"--out {out} is not writable.")


def _resolve_size(args, d: int) -> tuple[int, int]:
    """p and n from --p/--n or --psi-p/--psi-n (p = psi_p d, n = psi_n d, which must be whole numbers)."""
    sizes = []
    for count, ratio, name in ((args.p, args.psi_p, "p"), (args.n, args.psi_n, "n")):
        if count is not None and ratio is not None:
            raise InvalidParameterError(f"give either --{name} or --psi-{name}, not both.")
        if count is not None:
            if count <= 0:
                raise InvalidParameterError(f"--{name} must be a positive integer, got {count}.")
            sizes.append(count)
            continue
        if not (ratio > 0 and math.isfinite(ratio)):
            raise InvalidParameterError(f"--psi-{name} must be a positive number, got {ratio:g}.")
        value = ratio * d
        if abs(value - round(value)) > 1e-9 or round(value) < 1:
            raise InvalidParameterError(f"--psi-{name} * d = {value:g} is not a positive whole number; use --{name}.")
        sizes.append(int(round(value)))
    return sizes[0], sizes[1]


def _add_output_options(p, name: str) -> None:
    """--out (default rfdm_results/NAME), --json and --quiet, the same for every command."""
    p.add_argument("--out", default=f"rfdm_results/{name}", help=f"output folder (default rfdm_results/{name})")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def _add_device_option(p) -> None:
    """--device: where the heavy kernels run (rfdm.backend); :func:`main` resolves it before any work and makes
    it the default device of the command."""
    p.add_argument("--device", default="cpu", help="where the heavy kernels run: cpu (NumPy, default), torch-cpu "
                   "(PyTorch on the CPU), cuda or cuda:N (PyTorch on a GPU); torch needs pip install 'rfdm[torch]'")


def _emit(args, summary: dict, paths: dict) -> None:
    """Print the --json object (summary plus the files written), or where the files are."""
    from .results import to_jsonable

    if args.json:
        print(json.dumps(to_jsonable(dict(summary, files=paths))))
    elif not args.quiet:
        print(f"wrote {', '.join(str(v) for v in paths.values())}", file=sys.stderr)


def _add_model_options(p):
    p.add_argument("--model", default="per-time", choices=("per-time", "time-integrated"),
                   help="per-time: one network at time --t; time-integrated: one network for all t ~ U[t-min, t-max] "
                   "(its score error is reported at --t)")
    p.add_argument("--t-min", type=float, default=0.01, help="time-integrated: smallest diffusion time (default 0.01)")
    p.add_argument("--t-max", type=float, default=2.0, help="time-integrated: largest diffusion time (default 2)")
    p.add_argument("--beta", default="none", choices=("none", "gaussian-skip"),
                   help="time-integrated: skip term beta_t x (none, or -x/Gamma_t^2)")
    p.add_argument("--t-law", default="uniform", choices=("uniform", "log-uniform"),
                   help="time-integrated: law Q of the diffusion time on [t-min, t-max] (uniform in t, or in log t)")
    p.add_argument("--t-quad-tol", type=float, default=1e-5,
                   help="time-integrated: relative tolerance of the quadrature in t (default 1e-5)")
    p.add_argument("--t-nodes-max", type=int, default=65,
                   help="time-integrated: most quadrature nodes in t (default 65)")


def _add_dynamics(sub):
    p = sub.add_parser("dynamics", help="train / test loss and score error of the random-features score "
                       "against training time tau (closed form or step-by-step).",
                       description="Closed-form gradient-flow curves of the per-time random-features score "
                       "on Gaussian data (THEORY §2), or gradient descent / Adam with fresh noise.")
    p.add_argument("--d", type=int, default=32, help="data dimension (default 32)")
    p.add_argument("--psi-p", type=float, default=None, help="p/d (default 16)")
    p.add_argument("--psi-n", type=float, default=None, help="n/d (default 4)")
    p.add_argument("--p", type=int, default=None, help="number of features (instead of --psi-p)")
    p.add_argument("--n", type=int, default=None, help="number of training points (instead of --psi-n)")
    p.add_argument("--t", type=float, default=0.01, help="diffusion time t > 0 (default 0.01)")
    p.add_argument("--activation", default="tanh", help=f"one of {', '.join(available_activations())}")
    p.add_argument("--sigma-spectrum", default="1", help="comma list of covariance eigenvalues, equal weights")
    p.add_argument("--sigma-weights", default=None, help="comma list of weights of the eigenvalues (sum 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--tau", default=None, help="training times: numbers, 'inf', START:STOP:NUM log ranges, "
                   "comma-separated (default 1e-1:1e7:161,inf; 1:1e3:31 for gd/adam)")
    p.add_argument("--method", default="exact", choices=("exact", "gd", "adam"),
                   help="exact: closed form; gd/adam: step-by-step training with fresh noise")
    p.add_argument("--noise-draws", type=int, default=None, metavar="M",
                   help="finite-m setting: M noise draws per point, fixed (Monte Carlo U, V for exact; "
                   "fixed draws for gd/adam). Default: exact noise average / fresh noise every step")
    p.add_argument("--lr", type=float, default=None, help="learning rate for gd/adam (default: half the "
                   "stability limit for gd)")
    p.add_argument("--rtol", type=float, default=1e-10, help="relative truncation tolerance of the Mehler series")
    _add_model_options(p)
    _add_device_option(p)
    _add_output_options(p, "dynamics")
    p.set_defaults(func=_run_dynamics)


def _run_dynamics(args) -> int:
    from .experiments import dynamics as exp

    if args.d <= 0:
        raise InvalidParameterError(f"--d must be a positive integer, got {args.d}.")
    if args.p is None and args.psi_p is None:
        args.psi_p = 16.0
    if args.n is None and args.psi_n is None:
        args.psi_n = 4.0
    p, n = _resolve_size(args, args.d)
    check_output_dir(args.out)
    if args.tau is not None:
        tau = parse_tau(args.tau)
    else:
        tau = parse_tau("1e-1:1e7:161,inf" if args.method == "exact" else "1:1e3:31")
    if args.noise_draws is not None and args.noise_draws <= 0:
        raise InvalidParameterError(f"--noise-draws must be a positive integer, got {args.noise_draws}.")
    config = exp.DynamicsConfig(
        d=args.d, p=p, n=n, t=args.t, activation=args.activation,
        sigma_spectrum=parse_float_list(args.sigma_spectrum, "--sigma-spectrum"),
        sigma_weights=None if args.sigma_weights is None else parse_float_list(args.sigma_weights, "--sigma-weights"),
        seed=args.seed, tau=tau, method=args.method, noise_draws=args.noise_draws, learning_rate=args.lr,
        rtol=args.rtol, model=args.model, t_min=args.t_min, t_max=args.t_max, beta=args.beta, time_law=args.t_law,
        t_rtol=args.t_quad_tol, t_nodes_max=args.t_nodes_max)
    result = exp.compute(config, quiet=args.quiet)
    paths = exp.save(result, args.out)
    _emit(args, exp.json_summary(result), paths)
    return 0


def _add_spectrum(sub):
    p = sub.add_parser("spectrum", help="spectrum of U from the self-consistent equations: atom, bulks, "
                       "tau_gen, tau_mem; optionally against the exact U at dimension D.",
                       description="Solve the self-consistent equations of the Gaussian-equivalent U "
                       "(THEORY §3): density on grids resolving every bulk, atoms, bulk edges and masses, "
                       "timescales, run-time checks. Exit status 3 if a check fails (the result is written).")
    p.add_argument("--psi-p", type=float, default=64.0, help="p/d (default 64)")
    p.add_argument("--psi-n", type=float, default=8.0, help="n/d (default 8)")
    p.add_argument("--t", type=float, default=0.01, help="diffusion time t > 0 (default 0.01)")
    p.add_argument("--activation", default="tanh", help=f"one of {', '.join(available_activations())}")
    p.add_argument("--sigma-spectrum", default="1", help="comma list of covariance eigenvalues")
    p.add_argument("--sigma-weights", default=None, help="comma list of their weights (sum 1; default equal)")
    p.add_argument("--empirical-d", type=int, default=None, metavar="D",
                   help="also compute the exact noise-averaged U at dimension D, overlay it and report KS")
    p.add_argument("--points", type=int, default=2000, help="density points in all (default 2000)")
    p.add_argument("--d", type=int, default=None, help="time-integrated model: dimension of the numerical spectrum")
    _add_model_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of W and X for --empirical-d (default 0)")
    _add_device_option(p)
    _add_output_options(p, "spectrum")
    p.set_defaults(func=_run_spectrum)


def _run_spectrum(args) -> int:
    from .experiments import spectrum as exp

    check_output_dir(args.out)
    if args.model == "time-integrated":
        return _run_numerical_spectrum(args)
    if args.d is not None:
        raise InvalidParameterError("--d is for --model time-integrated; use --empirical-d with the per-time model.")
    config = exp.SpectrumConfig(
        psi_p=args.psi_p, psi_n=args.psi_n, t=args.t, activation=args.activation,
        sigma_spectrum=parse_float_list(args.sigma_spectrum, "--sigma-spectrum"),
        sigma_weights=None if args.sigma_weights is None else parse_float_list(args.sigma_weights, "--sigma-weights"),
        empirical_d=args.empirical_d, seed=args.seed, n_points=args.points)
    result = exp.compute(config, quiet=args.quiet)
    paths = exp.save(result, args.out)
    _emit(args, exp.json_summary(result), paths)
    if not result["checks"]["converged"]:
        print("rfdm: numerical error: a run-time check of the spectrum failed (see solver.checks in the "
              "result).", file=sys.stderr)
        return 3
    return 0


def _add_outlier(sub):
    p = sub.add_parser("outlier", help="BBP outlier of U for two-cluster mixture data: position, threshold, "
                       "overlap with W m, phase diagram, training timescale.",
                       description="The outlier of U for data (1/2)N(m, sigma_x^2 I) + (1/2)N(-m, sigma_x^2 I) "
                       "(THEORY §5): theory (d -> infinity) and, with --empirical, the exact U at dimension d.")
    p.add_argument("--d", type=int, default=200, help="data dimension for the exact U and the training figure")
    p.add_argument("--psi-p", type=float, default=4.0, help="p/d (default 4)")
    p.add_argument("--psi-n", type=float, default=2.0, help="n/d (default 2)")
    p.add_argument("--t", default="0.1", help="diffusion time(s): numbers or START:STOP:NUM log ranges, "
                   "comma-separated (default 0.1)")
    p.add_argument("--m-norm", type=float, default=None, help="|m| (fixed as d grows)")
    p.add_argument("--m-tilde", type=float, default=None, help="|m| = m_tilde sqrt(d)")
    p.add_argument("--sigma-x", type=float, default=1.0, help="standard deviation of each cluster (default 1)")
    p.add_argument("--activation", default="tanh", help=f"one of {', '.join(available_activations())}")
    p.add_argument("--empirical", action="store_true", help="also compute the exact U at dimension d")
    p.add_argument("--balanced", action="store_true", help="exactly n/2 points in each cluster (n must be even)")
    p.add_argument("--seed", type=int, default=0, help="seed of W, m's direction and the data (default 0)")
    _add_device_option(p)
    _add_output_options(p, "outlier")
    p.set_defaults(func=_run_outlier)


def _run_outlier(args) -> int:
    from .experiments import outlier as exp

    check_output_dir(args.out)
    if args.m_norm is None and args.m_tilde is None:
        args.m_norm = 2.0
    config = exp.OutlierConfig(d=args.d, psi_p=args.psi_p, psi_n=args.psi_n, t=parse_tau(args.t, name="--t"),
                               m_norm=args.m_norm, m_tilde=args.m_tilde, sigma_x=args.sigma_x,
                               activation=args.activation, empirical=args.empirical, balanced=args.balanced,
                               seed=args.seed)
    result = exp.compute(config, quiet=args.quiet)
    paths = exp.save(result, args.out)
    _emit(args, exp.json_summary(result), paths)
    return 0


def _run_numerical_spectrum(args) -> int:
    from .experiments import timescales as exp

    if args.d is None:
        raise InvalidParameterError("--model time-integrated needs --d (the dimension of the numerical spectrum).")
    if args.empirical_d is not None or args.sigma_spectrum != "1" or args.sigma_weights is not None:
        raise InvalidParameterError("the time-integrated spectrum takes Sigma = I and no --empirical-d.")
    config = exp.TimescalesConfig(model="time-integrated", d=args.d, psi_p=args.psi_p, psi_n=(args.psi_n,),
                                  t_min=args.t_min, t_max=args.t_max, beta=args.beta, time_law=args.t_law,
                                  t_rtol=args.t_quad_tol, t_nodes_max=args.t_nodes_max,
                                  activation=args.activation, seed=args.seed, curves=True)
    result = exp.compute_numerical_spectrum(config, quiet=args.quiet)
    paths = exp.save_numerical_spectrum(result, args.out)
    summary = {k: result[k] for k in ("eigenvalues_summary", "bulks", "tau_gen", "tau_mem", "memorization_modes",
                                      "tau_mem_median") if k in result}
    _emit(args, dict(summary, config=result["header"]["config"]), paths)
    return 0


def _add_timescales(sub):
    p = sub.add_parser("timescales", help="tau_gen and tau_mem against n (tau_mem grows like n, tau_gen flat).",
                       description="Timescales from the spectrum of U and from the test-loss curves over a range of n "
                       "(psi_n d), with the fitted slope of log tau_mem against log n.")
    p.add_argument("--d", type=int, default=24, help="data dimension (default 24)")
    p.add_argument("--psi-p", type=float, default=16.0, help="p/d (default 16)")
    p.add_argument("--psi-n", default="1,2,4", help="comma list of n/d (default 1,2,4)")
    p.add_argument("--t", type=float, default=0.01, help="per-time model: diffusion time (default 0.01)")
    _add_model_options(p)
    p.add_argument("--activation", default="tanh", help=f"one of {', '.join(available_activations())}")
    p.add_argument("--draws", type=int, default=1, help="independent draws of (W, X, b) per n (default 1)")
    p.add_argument("--no-curves", action="store_true", help="skip the loss curves (then the memorization modes are "
                   "found by gaps in the spectrum)")
    p.add_argument("--seed", type=int, default=0)
    _add_device_option(p)
    _add_output_options(p, "timescales")
    p.set_defaults(func=_run_timescales)


def _run_timescales(args) -> int:
    from .experiments import timescales as exp

    check_output_dir(args.out)
    config = exp.TimescalesConfig(model=args.model, d=args.d, psi_p=args.psi_p,
                                  psi_n=parse_float_list(args.psi_n, "--psi-n"), t=args.t, t_min=args.t_min,
                                  t_max=args.t_max, beta=args.beta, time_law=args.t_law, t_rtol=args.t_quad_tol,
                                  t_nodes_max=args.t_nodes_max, draws=args.draws,
                                  activation=args.activation, seed=args.seed, curves=not args.no_curves)
    result = exp.compute_scaling(config, quiet=args.quiet)
    paths = exp.save_scaling(result, args.out)
    _emit(args, exp.scaling_summary(result), paths)
    return 0


def _add_reproduce(sub):
    p = sub.add_parser("figure", help="compute and plot one registered figure of the talk (--list lists them).")
    p.add_argument("id", nargs="?", help="figure ID")
    p.add_argument("--list", action="store_true", help="list the figure IDs")
    p.add_argument("--preset", default="quick", choices=("quick", "paper", "tiny"))
    p.add_argument("--out", default="rfdm_results/figures", help="output folder")
    _add_device_option(p)
    p.set_defaults(func=_run_figure)
    p = sub.add_parser("reproduce", help="the quick preset of every figure and one HTML report (the main job).")
    p.add_argument("--preset", default="quick", choices=("quick", "paper", "tiny"))
    p.add_argument("--only", default=None, help="comma list of figure IDs (default: all)")
    p.add_argument("--out", default="rfdm_results/reproduce", help="output folder (default rfdm_results/reproduce)")
    p.add_argument("--gallery", default=None, metavar="DIR",
                   help="also write a Markdown gallery (DIR/README.md and the PNGs), e.g. docs/gallery")
    _add_device_option(p)
    p.set_defaults(func=_run_reproduce)


def _run_figure(args) -> int:
    from . import registry

    if args.list:
        for f in registry.all_figures():
            print(f"{f.id:28s} {f.title}")
        return 0
    if not args.id:
        raise InvalidParameterError("give a figure ID or --list.")
    registry.get_figure(args.id)
    check_output_dir(args.out)
    res = registry.run_figure(args.id, args.preset, args.out)
    print(json.dumps(res))
    return 0


def _run_reproduce(args) -> int:
    from . import registry
    from .report import write_gallery, write_report

    ids = [f.id for f in registry.all_figures()] if args.only is None else [s.strip() for s in args.only.split(",") if s.strip()]
    for fid in ids:
        registry.get_figure(fid)
    check_output_dir(args.out)
    if args.gallery is not None:
        check_output_dir(args.gallery)
    entries = []
    for k, fid in enumerate(ids, 1):
        print(f"[rfdm reproduce] ({k}/{len(ids)}) {fid} ...", file=sys.stderr, flush=True)
        entries.append(registry.run_figure(fid, args.preset, args.out))
        print(f"[rfdm reproduce] ({k}/{len(ids)}) {fid} done in {entries[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = write_report(entries, Path(args.out) / "report.html", args.preset)
    print(f"report: {Path(path).resolve()}")
    if args.gallery is not None:
        print(f"gallery: {Path(write_gallery(entries, args.gallery, args.preset)).resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rfdm", description="A solvable model of generative diffusion: random-features "
                     "score networks, exact training dynamics, spectra and memorization.")
    parser.add_argument("--version", action="version", version=f"rfdm {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    _add_dynamics(sub)
    _add_spectrum(sub)
    _add_outlier(sub)
    from .cli_sampling import add_commands as _add_sampling; _add_sampling(sub)
    from .cli_sweep import add_commands as _add_sweep; _add_sweep(sub)
    _add_timescales(sub)
    _add_reproduce(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        from .backend import default_device

        # --device (resolved here, before any work) is the default device of every kernel the command calls
        with default_device(getattr(args, "device", None)):
            return args.func(args)
    except InvalidParameterError as exc:
        print(f"rfdm: error: {exc}", file=sys.stderr)
        return 2
    except NumericalError as exc:
        print(f"rfdm: numerical error: {exc}", file=sys.stderr)
        return 3
    except RfdmError as exc:
        print(f"rfdm: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"rfdm: error: {exc.strerror or exc} ({exc.filename or 'output'}).", file=sys.stderr)
        return 1
    except MemoryError:
        print("rfdm: error: out of memory; reduce d, p or n.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rfdm: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
