"""The `rfdm sample` command; options generated from SampleConfig, TwoRegimesConfig and MemorizationConfig
(the defaults of the three studies shown side by side).  (`rfdm regimes` is generated from its registered
experiment, rfdm.cli.commands.add_registered.)"""

from __future__ import annotations

from ..errors import InvalidParameterError
from .common import (add_config_options, add_device_option, add_output_options, check_output_dir,
                     config_from_args, emit, flag_of, given)

STUDIES = ("none", "two-regimes", "memorization")
DEFAULT_OUT = {"none": "rfdm_results/sample", "two-regimes": "rfdm_results/two_regimes",
               "memorization": "rfdm_results/memorization"}


def _variants():
    from ..experiments import sampling as exp

    return [("", exp.SampleConfig), ("two-regimes", exp.TwoRegimesConfig), ("memorization", exp.MemorizationConfig)]


def add_commands(sub) -> None:
    """Register the `sample` subcommand (its three studies) on an argparse subparsers object."""
    p = sub.add_parser("sample", help="sample with the backward process (exact, empirical or random-features "
                       "score) and measure memorization and the distance to the target.",
                       description="Integrate the backward process from N(0, I) at T down to t_min with a score "
                       "source, then report the memorization fraction (with an exact Clopper–Pearson interval), the mixture "
                       "statistics, the energy distance to the target and, for Gaussian data, the Gaussian KL "
                       "(docs/theory.md §1, §6). --study two-regimes and --study memorization run the talk's two "
                       "studies (defaults shown per study).")
    add_config_options(p, _variants())
    p.add_argument("--study", default="none", help="none (default), two-regimes or memorization")
    add_device_option(p)
    add_output_options(p, None, default="rfdm_results/sample, rfdm_results/two_regimes or rfdm_results/memorization")
    p.set_defaults(func=run_sample)


def run_sample(args) -> int:
    from ..experiments import sampling as exp

    if args.study not in STUDIES:
        raise InvalidParameterError(f"unknown study {args.study!r}: choose one of {', '.join(STUDIES)}.")
    out = DEFAULT_OUT[args.study] if args.out is None else args.out
    cls = dict(zip(STUDIES, (c for _, c in _variants())))[args.study]
    if args.study != "none" and (args.score is not None or args.data is not None):
        raise InvalidParameterError(f"--study {args.study} sets its own data and score; drop --data and --score.")
    sample_fields = given(args, exp.SampleConfig)
    unused = sorted(given(args, exp.SampleConfig) - given(args, cls)) if args.study != "none" else []
    if unused:
        from ..protocol import specs

        flag = flag_of(unused[0], specs(exp.SampleConfig)[unused[0]][1])
        raise InvalidParameterError(f"{flag} does not apply to --study {args.study}.")
    if args.data not in (None, "gaussian", "mixture") and "d" in sample_fields:
        raise InvalidParameterError("--d is set by the data file; drop --d.")
    fixed = {}
    if args.study == "none" and args.data not in (None, "gaussian", "mixture") and args.n_train is None:
        fixed["n_train"] = None  # a data file: all its rows
    config = config_from_args(cls, args, **fixed)
    check_output_dir(out, "--out")
    quiet = args.quiet
    if args.study == "two-regimes":
        result = exp.compute_two_regimes(config, quiet=quiet)
        paths, summary = exp.save_two_regimes(result, out), exp.two_regimes_summary(result)
    elif args.study == "memorization":
        result = exp.compute_memorization(config, quiet=quiet)
        paths, summary = exp.save_memorization(result, out), exp.memorization_summary(result)
    else:
        result = exp.compute(config, quiet=quiet)
        paths, summary = exp.save(result, out), exp.json_summary(result)
    emit(args, summary, paths)
    return 0
