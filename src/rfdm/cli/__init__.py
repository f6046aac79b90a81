"""The `rfdm` command line.  Bad input (and an unreadable or unwritable file): one sentence on stderr and exit
status 2, nothing written.  Numerical trouble (NumericalError, arithmetic errors, out of memory): one sentence
and exit status 3.

Each command's options are generated from the declared configuration of its experiment (rfdm.protocol); the
modules: :mod:`.common` (shared helpers), :mod:`.commands` (dynamics, spectrum, outlier, timescales, figure,
reproduce), :mod:`.sampling` (sample, regimes), :mod:`.sweep` (sweep run/status/collect/kinds).
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import InvalidParameterError, NumericalError, RfdmError
from . import commands, nets, sampling, sweep
from .common import Parser, check_output_dir, parse_float_list, parse_tau, setup_logging

__all__ = ["build_parser", "main", "parse_tau", "parse_float_list", "check_output_dir"]


def import_experiments() -> None:
    """Register the built-in experiments (rfdm.experiments); their commands are generated from them."""
    from .. import experiments  # noqa: F401


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rfdm", description="A solvable model of generative diffusion: random-features "
                    "score networks, exact training dynamics, spectra and memorization.")
    parser.add_argument("--version", action="version", version=f"rfdm {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    import_experiments()
    commands.add_registered(sub, taken={"spectrum", "sample", "two-regimes", "memorization"})
    commands.add_spectrum(sub)
    sampling.add_commands(sub)
    nets.add_commands(sub)
    sweep.add_commands(sub)
    commands.add_figures(sub)
    return parser


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        setup_logging(args)
        from ..backend import default_device

        # --device (resolved here, before any work) is the default device of every kernel the command calls
        with default_device(getattr(args, "device", None)):
            return args.func(args)
    except InvalidParameterError as exc:
        print(f"rfdm: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except NumericalError as exc:
        print(f"rfdm: numerical error: {_one_line(exc)}", file=sys.stderr)
        return 3
    except ArithmeticError as exc:  # FloatingPointError, OverflowError, ZeroDivisionError
        print(f"rfdm: numerical error: {_one_line(exc).rstrip('.')} ({type(exc).__name__}).", file=sys.stderr)
        return 3
    except MemoryError:
        print("rfdm: numerical error: out of memory; reduce d, p or n.", file=sys.stderr)
        return 3
    except RfdmError as exc:
        print(f"rfdm: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"rfdm: error: {exc.strerror or exc} ({exc.filename or 'output'}).", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rfdm: error: {exc.strerror or exc} ({exc.filename or 'output'}).", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rfdm: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
