"""What every command shares: the parser class, the output options and checks, the --json output, and the
generator of a command's options from declared configurations (rfdm.protocol)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from pathlib import Path

from ..errors import InvalidParameterError
from ..protocol import make_config, parse_float_list, parse_tau, specs

__all__ = ["Parser", "parse_float_list", "parse_tau", "check_output_dir", "add_output_options", "add_device_option",
           "emit", "add_config_options", "config_from_args", "given", "flag_of", "setup_logging"]

log = logging.getLogger("rfdm")


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one sentence, exit 2 (argparse's default prints the whole usage)
        raise InvalidParameterError(f"{message} (see `{self.prog} --help`).")


_FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")


def check_output_dir(out, option: str = "--out") -> None:
    """The output folder must be a folder (or not exist yet), outside /proc, /sys and /dev, and writable
    (a temporary file is created and removed in its nearest existing ancestor): checked before any work."""
    if not str(out).strip():
        raise InvalidParameterError(f"{option} is empty; give a folder.")
    path = Path(out)
    resolved = path.resolve()
    if any(str(resolved) == r or str(resolved).startswith(r + "/") for r in _FORBIDDEN_ROOTS):
        raise InvalidParameterError(f"{option} {out} is inside {resolved.parts[1] and '/' + resolved.parts[1]}, "
                                    "which cannot hold results.")
    if path.exists() and not path.is_dir():
        raise InvalidParameterError(f"{option} {out} exists and is not a folder.")
    parent = next((q for q in (path, *path.parents) if q.exists()), Path("."))
    if not parent.is_dir():
        raise InvalidParameterError(f"{option} {out} is below {parent}, which is not a folder.")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".rfdm-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError:
        raise InvalidParameterError(f"{option} {out} is not writable.") from None


def add_output_options(p, name: str | None, default: str | None = None) -> None:
    """--out (default rfdm_results/NAME), --json and --quiet, the same for every command."""
    out = default if default is not None else f"rfdm_results/{name}"
    p.add_argument("--out", default=out if name else None, help=f"output folder (default {out})")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout (no progress messages)")
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def add_device_option(p, default="cpu", help_tail: str = "") -> None:
    """--device: where the heavy kernels run (rfdm.backend); main() resolves it before any work and makes it
    the default device of the command."""
    p.add_argument("--device", default=default, help="where the heavy kernels run: cpu (NumPy, default), "
                   "torch-cpu (PyTorch on the CPU), cuda or cuda:N (PyTorch on a GPU); torch needs pip install "
                   "'rfdm[torch]'" + help_tail)


def emit(args, summary: dict, paths: dict) -> None:
    """Print the --json object (summary plus the files written), or where the files are."""
    from ..results import to_jsonable

    if args.json:
        print(json.dumps(to_jsonable(dict(summary, files=paths))))
    else:
        log.info("wrote %s", ", ".join(str(v) for v in paths.values()))


def setup_logging(args) -> None:
    """Messages of the `rfdm` loggers go to stderr as ``[rfdm.NAME] message``, silent under --quiet; progress
    bars (rfdm.progress) only without --quiet and --json."""
    from .. import progress

    quiet = bool(getattr(args, "quiet", False))
    progress.BARS["on"] = not (quiet or getattr(args, "json", False))
    logger = logging.getLogger("rfdm")
    for h in list(logger.handlers):
        if getattr(h, "_rfdm_cli", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._rfdm_cli = True
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


# -- options generated from declared configurations ----------------------------------------------------------

def flag_of(name: str, spec) -> str:
    return spec.flag or "--" + name.replace("_", "-")


def _show(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return "inf" if value == math.inf else f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(_show(v) for v in value)
    return str(value)


def _kind(field) -> str:
    """int, float, str, bool or list, from the field's default or its annotation."""
    spec = field.metadata["rfdm"]
    if spec.parse is not None:
        return spec.parse
    default = field.default
    for typ, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if default is not None and not callable(default) and type(default) is typ:
            return name
    ann = str(field.type)
    for name in ("int", "float", "str", "bool"):
        if ann.startswith(name):
            return name
    return "floats"


def add_config_options(p, variants, skip=()) -> None:
    """Add one option per declared field of the config classes ``variants`` (a class, or a list of
    (label, class) pairs whose defaults may differ: e.g. the studies of `rfdm sample`).  Every option's default
    is None in argparse (so that what the user gave is known); --help shows the declared default of each
    variant, the unit, the constraint and the choices."""
    if isinstance(variants, type):
        variants = [("", variants)]
    seen = set()
    for _, cls in variants:
        for name, (field, spec) in specs(cls).items():
            if name in seen or name in skip or not spec.cli:
                continue
            seen.add(name)
            shown = []
            for label, other in variants:
                if name in specs(other):
                    f2, s2 = specs(other)[name]
                    value = s2.show_default if s2.show_default is not None else _show(_current_default(f2))
                    shown.append(f"{label} {value}".strip() if label else value)
            if spec.ratio is not None:
                rflag, psi, dim = spec.ratio
                p.add_argument(rflag, dest=rflag.lstrip("-").replace("-", "_"), type=float, default=None,
                               help=f"{name}/{dim} (default {psi:g}; {name} = {rflag} * {dim} must be whole)")
            kind = _kind(field)
            extra = [x for x in (spec.unit and f"unit: {spec.unit}",
                                 spec.choices() and "one of " + ", ".join(spec.choices())) if x]
            text = spec.help + (f" ({'; '.join(extra)})" if extra else "") + f" [default: {'; '.join(shown)}]"
            text = text.replace("%", "%%")
            flag = flag_of(name, spec)
            if kind == "bool":
                if _current_default(field):
                    p.add_argument("--no-" + flag[2:], dest=name, action="store_const", const=False, default=None,
                                   help=text)
                else:
                    p.add_argument(flag, dest=name, action="store_const", const=True, default=None, help=text)
                continue
            typ = {"int": int, "float": float}.get(kind, str)
            p.add_argument(flag, dest=name, type=typ, default=None, metavar=spec.metavar, help=text)


def _current_default(field):
    from ..protocol import default_of

    return default_of(field)


def given(args, cls) -> set:
    """The fields of ``cls`` the user gave on the command line (ratio options included as their count)."""
    out = set()
    for name, (_, spec) in specs(cls).items():
        if getattr(args, name, None) is not None:
            out.add(name)
        if spec.ratio is not None and getattr(args, spec.ratio[0].lstrip("-").replace("-", "_"), None) is not None:
            out.add(name)
    return out


def config_from_args(cls, args, **fixed):
    """The config of class ``cls`` from the parsed options (those not given keep the declared default; text
    lists parsed with the option's name in messages; a count given as --psi-x is resolved against its
    dimension), plus ``fixed`` values, validated."""
    values = {}
    for name, (field, spec) in specs(cls).items():
        if name in fixed or not spec.cli:
            continue
        value = getattr(args, name, None)
        flag = flag_of(name, spec)
        kind = _kind(field)
        if value is not None and kind == "floats":
            value = parse_float_list(value, flag)
        elif value is not None and kind in ("tau", "tau1"):
            value = parse_tau(value, flag)
            if kind == "tau1":
                if len(value) != 1:
                    raise InvalidParameterError(f"{flag} takes one value here (several are for a list of times), "
                                                f"got {len(value)}.")
                value = value[0]
        if spec.ratio is not None:
            value = _resolve_count(cls, name, spec, value, args, fixed)
        if value is not None:
            values[name] = value
    values.update(fixed)
    return make_config(cls, **values)


def _resolve_count(cls, name, spec, count, args, fixed):
    """--x or --psi-x (x = psi d, which must be a whole number); None when neither is given."""
    rflag, _, dim = spec.ratio
    ratio = getattr(args, rflag.lstrip("-").replace("-", "_"), None)
    if count is not None and ratio is not None:
        raise InvalidParameterError(f"give either --{name} or {rflag}, not both.")
    if ratio is None:
        return count
    if not (ratio > 0 and math.isfinite(ratio)):
        raise InvalidParameterError(f"{rflag} must be a positive number, got {ratio:g}.")
    d = fixed.get(dim, getattr(args, dim, None))
    if d is None:
        d = _current_default(specs(cls)[dim][0])
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise InvalidParameterError(f"--{dim} must be a positive integer, got {d}.")
    value = ratio * d
    if abs(value - round(value)) > 1e-9 or round(value) < 1:
        raise InvalidParameterError(f"{rflag} * {dim} = {value:g} is not a positive whole number; use --{name}.")
    return int(round(value))

