"""The `dynamics`, `spectrum`, `outlier`, `timescales`, `figure` and `reproduce` commands: options generated
from the experiments' declared configurations (rfdm.protocol)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import InvalidParameterError
from .common import (add_config_options, add_device_option, add_output_options, check_output_dir,
                     config_from_args, emit, flag_of, given)

log = logging.getLogger("rfdm")


def add_spectrum(sub):
    from ..experiments.spectrum import SpectrumConfig
    from ..experiments.timescales import NumericalSpectrumConfig

    p = sub.add_parser("spectrum", help="spectrum of U from the self-consistent equations: atom, bulks, "
                       "tau_gen, tau_mem; optionally against the exact U at dimension D.",
                       description="Solve the self-consistent equations of the Gaussian-equivalent U "
                       "(docs/theory.md §4): density on grids resolving every bulk, atoms, bulk edges and masses, "
                       "timescales, run-time checks. Exit status 3 if a check fails (the result is written). "
                       "--model time-integrated: the numerical spectrum of the time-integrated U at dimension --d "
                       "(with --equivalent-spectrum, beside the self-consistent spectrum of its multi-time Gaussian "
                       "equivalent, §7.2; exit status 3 if that solver's checks fail).")
    add_config_options(p, SpectrumConfig)
    # the time-integrated model's numerical spectrum (rfdm.experiments.timescales) takes these too
    add_config_options(p, [("time-integrated", NumericalSpectrumConfig)],
                       skip=("psi_n", "draws", "curves", "t", "psi_p", "activation", "seed"))
    add_device_option(p)
    add_output_options(p, "spectrum")
    p.set_defaults(func=run_spectrum)


def run_spectrum(args) -> int:
    from ..experiments import spectrum as exp
    from ..experiments.dynamics import MODELS
    from ..experiments.timescales import NumericalSpectrumConfig

    if args.model is not None and args.model not in MODELS:
        raise InvalidParameterError(f"unknown model {args.model!r}: choose one of {', '.join(MODELS)}.")
    if args.model == "time-integrated":
        return _run_numerical_spectrum(args)
    extra = given(args, NumericalSpectrumConfig) - given(args, exp.SpectrumConfig) - {"model"}
    if "d" in extra:
        raise InvalidParameterError("--d is for --model time-integrated; use --empirical-d with the per-time model.")
    if extra:
        from ..protocol import specs

        flags = ", ".join(sorted(flag_of(k, specs(NumericalSpectrumConfig)[k][1]) for k in extra))
        raise InvalidParameterError(f"{flags} {'is' if len(extra) == 1 else 'are'} for --model time-integrated.")
    config = config_from_args(exp.SpectrumConfig, args)
    check_output_dir(args.out)
    result = exp.compute(config, quiet=args.quiet)
    emit(args, exp.json_summary(result), exp.save(result, args.out))
    if not result["checks"]["converged"]:
        import sys

        print("rfdm: numerical error: a run-time check of the spectrum failed (see solver.checks in the "
              "result).", file=sys.stderr)
        return 3
    return 0


def _run_numerical_spectrum(args) -> int:
    from ..experiments import timescales as exp

    if args.d is None:
        raise InvalidParameterError("--model time-integrated needs --d (the dimension of the numerical spectrum).")
    if args.empirical_d is not None or args.sigma_spectrum is not None or args.sigma_weights is not None:
        raise InvalidParameterError("the time-integrated spectrum takes Sigma = I and no --empirical-d.")
    from ..experiments.spectrum import SpectrumConfig
    from ..protocol import default_of, specs

    # psi_p, psi_n, activation and seed are the spectrum command's options (their declared defaults)
    shared = {k: getattr(args, k) if getattr(args, k) is not None else default_of(specs(SpectrumConfig)[k][0])
              for k in ("psi_p", "psi_n", "activation", "seed")}
    config = config_from_args(exp.NumericalSpectrumConfig, args, model="time-integrated", psi_p=shared["psi_p"],
                              psi_n=(shared["psi_n"],), activation=shared["activation"], seed=shared["seed"],
                              curves=True)
    if (args.equivalent_points is not None or args.exact is not None) and not config.equivalent_spectrum:
        raise InvalidParameterError(f"{'--equivalent-points' if args.exact is None else '--no-exact'} is for "
                                    "--equivalent-spectrum.")
    if config.equivalent_spectrum and config.beta != "none":
        raise InvalidParameterError("--equivalent-spectrum supports --beta none only (the multi-time equivalent "
                                    "does not model the skip term's data part).")
    check_output_dir(args.out)
    result = exp.compute_numerical_spectrum(config, quiet=args.quiet)
    paths = exp.save_numerical_spectrum(result, args.out)
    summary = {k: result[k] for k in exp.NUMERICAL_SUMMARY_KEYS if k in result}
    emit(args, dict(summary, config=result["header"]["config"]), paths)
    checks = result.get("equivalent_spectrum", {}).get("checks", {})
    if not all(checks.values()):
        import sys

        failed = ", ".join(k for k, v in checks.items() if not v)
        print(f"rfdm: numerical error: a run-time check of the equivalent spectrum failed ({failed}; see "
              "equivalent_spectrum.checks in the result).", file=sys.stderr)
        return 3
    return 0


def add_point_options(p) -> None:
    """--executor and --workers of `figure` and `reproduce`: how the exact flows of the published figures with
    points (rfdm.published.POINT_FIGURES) run; each is a stored, resumable point under OUT/ID/points/."""
    from ..published._points import EXECUTORS

    p.add_argument("--executor", default="serial", choices=EXECUTORS,
                   help="how the exact flows of B25-fig5, B25-SM-fig12, B25-SM-fig13 and bridge-1-over-d run, each a "
                   "stored point under OUT/ID/points/ that a rerun after a kill does not recompute: serial (here, one "
                   "after another; default), local (a process pool of --workers), submitit-local, slurm (submitit)")
    p.add_argument("--workers", type=int, default=None,
                   help="points computed at once (local: default min(2, CPU count); serial takes 1 only)")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="a [slurm] setting of the points' jobs (partition, account, qos, timeout_min, cpus_per_task, "
                   "mem_gb, array_parallelism; docs/sweeps.md), repeatable; with --executor slurm")


def point_options(args) -> dict:
    """The validated --executor/--workers/--device of a command, as keywords of registry.run_figure."""
    from ..published._points import check_executor, parse_slurm

    check_executor(args.executor, args.workers, args.device)
    slurm = parse_slurm(args.slurm)
    if slurm and args.executor != "slurm":
        raise InvalidParameterError("--slurm settings need --executor slurm.")
    return {"executor": args.executor, "workers": args.workers, "device": args.device,
            "quiet": getattr(args, "quiet", False), "slurm": slurm}


def add_figures(sub):
    from ..registry import PRESETS

    p = sub.add_parser("figure", help="compute and plot one registered figure of the talk (--list lists them).")
    p.add_argument("id", nargs="?", help="figure ID")
    p.add_argument("--list", action="store_true", help="list the figure IDs")
    p.add_argument("--preset", default="quick", choices=PRESETS, help="size preset (default quick)")
    p.add_argument("--out", default="rfdm_results/figures", help="output folder (default rfdm_results/figures)")
    add_device_option(p)
    add_point_options(p)
    p.set_defaults(func=run_figure)
    p = sub.add_parser("reproduce", help="the quick preset of every figure and one HTML report (the main job).")
    p.add_argument("--preset", default="quick", choices=PRESETS, help="size preset (default quick)")
    p.add_argument("--only", default=None, help="comma list of figure IDs (default: all)")
    p.add_argument("--out", default="rfdm_results/reproduce", help="output folder (default rfdm_results/reproduce)")
    p.add_argument("--gallery", default=None, metavar="DIR",
                   help="also write a Markdown gallery (DIR/README.md and the PNGs), e.g. docs/gallery")
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    add_device_option(p)
    add_point_options(p)
    p.set_defaults(func=run_reproduce)


def run_figure(args) -> int:
    from .. import registry

    if args.list:
        for f in registry.all_figures():
            print(f"{f.id:28s} {f.title}")
        return 0
    if not args.id:
        raise InvalidParameterError("give a figure ID or --list.")
    registry.get_figure(args.id)
    options = point_options(args)
    check_output_dir(args.out)
    res = registry.run_figure(args.id, args.preset, args.out, **options)
    print(json.dumps(res))
    return 0


def run_reproduce(args) -> int:
    """Each figure in turn; after each, its entry is on disk (ID/entry.json) and report.html / report.json are
    rebuilt from every entry under --out, so an interrupted run keeps the figures done and --only ID updates
    that figure's entry in the existing report."""
    from .. import registry
    from ..progress import progress
    from ..report import collect_entries, report_provenance, write_gallery, write_report, write_report_json

    ids = ([f.id for f in registry.all_figures() if f.id not in registry.NOT_IN_REPRODUCE] if args.only is None
           else [s.strip() for s in args.only.split(",") if s.strip()])
    if not ids:
        raise InvalidParameterError("--only names no figure; give comma-separated figure IDs (rfdm figure --list).")
    for fid in ids:
        registry.get_figure(fid)
    options = dict(point_options(args), quiet=True)  # the figures' own bar is the progress
    check_output_dir(args.out)
    if args.gallery is not None:
        check_output_dir(args.gallery, "--gallery")
    out = Path(args.out)
    prov = report_provenance(args.preset)
    with progress(total=len(ids), desc="rfdm reproduce", unit="figure") as bar:
        for k, fid in enumerate(ids, 1):
            bar.set_postfix_str(fid)
            log.info("(%d/%d) %s ...", k, len(ids), fid)
            entry = registry.run_figure(fid, args.preset, out, **options)
            log.info("(%d/%d) %s: %s (%.1f s)", k, len(ids), fid, entry["report"]["verdict"], entry["seconds"])
            entries = collect_entries(out)
            write_report(entries, out / "report.html", prov)
            write_report_json(entries, out / "report.json", prov)
            bar.update(1)
    print(f"report: {(out / 'report.html').resolve()}")
    print(f"verdicts: {(out / 'report.json').resolve()}")
    if args.gallery is not None:
        print(f"gallery: {Path(write_gallery(collect_entries(out), args.gallery, args.preset)).resolve()}")
    return 0


def add_registered(sub, taken) -> None:
    """One generated command per registered experiment with ``command=True`` (rfdm.protocol.register) not
    already taken by a hand-written command: options from the config's declared fields, --device, --out,
    --json, --quiet; the run is compute, the experiment's save and the --json summary (:func:`run_registered`).
    `dynamics`, `outlier`, `timescales` and `regimes` are such commands."""
    from ..protocol import EXPERIMENTS

    for name, exp in EXPERIMENTS.items():
        if not exp.command or name in taken:
            continue
        first_line = (exp.config.__doc__ or name).strip().split("\n")[0]
        p = sub.add_parser(name, help=exp.help or exp.description or first_line,
                           description=exp.long_description or (exp.config.__doc__ or "").strip())
        add_config_options(p, exp.config)
        add_device_option(p)
        add_output_options(p, name)
        p.set_defaults(func=run_registered, experiment=name)


def run_registered(args) -> int:
    import inspect

    from ..protocol import get

    exp = get(args.experiment)
    config = config_from_args(exp.config, args)
    check_output_dir(args.out)
    quiet = {"quiet": args.quiet} if "quiet" in inspect.signature(exp.compute).parameters else {}
    result = exp.compute(config, **quiet)
    emit(args, exp.json_summary(result), exp.save(result, args.out))
    return 0
