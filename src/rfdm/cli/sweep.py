"""The `rfdm sweep` command: `run`, `status`, `collect` and `kinds` (registered by :func:`add_commands`).

Conventions of :mod:`rfdm.cli`: bad input raises InvalidParameterError (one sentence, exit status 2, nothing
written; a missing optional extra too); progress goes to stderr; --json prints one JSON object to stdout.
`run` exits with status 3 when some points failed with a NumericalError (they are recorded; a rerun retries
them), 1 for other failures.  See docs/sweeps.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import InvalidParameterError, NumericalError, RfdmError
from .common import Parser, check_output_dir


def add_commands(sub) -> None:
    """Register the `sweep` command and its actions on an argparse subparsers object."""
    from ..sweep import EXECUTORS

    p = sub.add_parser("sweep", help="resumable parameter sweeps from a TOML config: run, status, collect.",
                       description="Resumable parameter sweeps (docs/sweeps.md): every combination of the [grid] "
                       "values of a CONFIG.toml is one point, stored atomically under its config hash; a killed "
                       "run resumes where it stopped.")
    actions = p.add_subparsers(dest="sweep_command", parser_class=Parser, metavar="ACTION", required=True)

    r = actions.add_parser("run", help="compute every point not done yet (failed points are retried).",
                           description="Compute the points of CONFIG.toml that are not done yet; safe to kill "
                           "and rerun.")
    r.add_argument("config", metavar="CONFIG.toml", help="the sweep config")
    r.add_argument("--workers", type=int, default=None,
                   help="points computed at once (default [sweep] workers, else min(2, CPU count))")
    r.add_argument("--executor", default=None, choices=EXECUTORS,
                   help="local (process pool, serial with --workers 1), submitit-local (submitit's "
                   "LocalExecutor) or slurm (submitit on SLURM); default [sweep] executor, else local")
    r.add_argument("--no-wait", action="store_true", help="slurm: submit the jobs and return")
    r.add_argument("--device", default=None, help="where each point's kernels run: cpu (NumPy), torch-cpu, cuda or "
                   "cuda:N (default [sweep] device, else cpu); not part of a point's key")
    _add_common(r, quiet=True)
    r.set_defaults(func=_run)

    s = actions.add_parser("status", help="points done / pending / failed.",
                           description="Count the points of a sweep that are done, pending and failed.")
    s.add_argument("target", metavar="CONFIG.toml|OUT", help="the sweep config, or its output folder")
    _add_common(s, quiet=False)
    s.set_defaults(func=_status)

    c = actions.add_parser("collect", help="gather the points into one labelled netCDF dataset (xarray).",
                           description="Gather the finished points into an xarray Dataset (one dimension per grid "
                           "parameter, one variable per output) written to netCDF.  Missing points are NaN "
                           "(with a warning), or an error with --strict.")
    c.add_argument("target", metavar="CONFIG.toml|OUT", help="the sweep config, or its output folder")
    c.add_argument("--output", default=None, metavar="FILE.nc", help="netCDF file (default OUT/collected.nc)")
    c.add_argument("--strict", action="store_true", help="fail if any point is pending or failed")
    _add_common(c, quiet=True)
    c.set_defaults(func=_collect)

    k = actions.add_parser("kinds", help="list the point kinds with their parameters and defaults.")
    k.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    k.set_defaults(func=_kinds)


def _add_common(p, quiet: bool) -> None:
    p.add_argument("--out", default=None, help="output folder (default [sweep] out, relative to the config's folder)")
    p.add_argument("--reuse-older", action="store_true", help="accept stored points written by an older rfdm "
                   "version (default: such points are pending and recomputed; see docs/sweeps.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def _check_out(out) -> None:
    check_output_dir(out, "--out")  # an empty string, /proc, below a file: one sentence
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidParameterError(f"the output folder {out} exists and is not a folder.")
    check_output_dir(out, "the output folder")


def _run(args) -> int:
    from .. import sweep as sw
    from ..results import to_jsonable
    from ..sweep.executors import MAX_WORKERS

    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        raise InvalidParameterError(f"--workers must be an integer in [1, {MAX_WORKERS}], got {args.workers}.")
    if args.out is not None:
        _check_out(args.out)
    if Path(args.config).is_dir():
        raise InvalidParameterError(f"{args.config} is a folder; `rfdm sweep run` takes the sweep's CONFIG.toml.")
    sweep = sw.load_config(args.config, out=args.out)
    sweep.reuse_older = args.reuse_older
    _check_out(sweep.out)
    summary = sw.run_sweep(sweep, executor=args.executor, workers=args.workers, quiet=args.quiet,
                           wait=not args.no_wait, device=args.device)
    if args.json:
        print(json.dumps(to_jsonable(summary)))
    failed = summary["failed"]
    if failed:
        first = failed[0]
        msg = (f"{len(failed)} of {summary['total']} points failed (first: {first['name']}: "
               f"{first['message'].rstrip('.')}); `rfdm sweep status` lists them and a rerun retries them.")
        if all(f.get("error") == "NumericalError" for f in failed):
            raise NumericalError(msg)
        raise RfdmError(msg)
    return 0


def _status(args) -> int:
    from .. import sweep as sw

    if args.out is not None:
        _check_out(args.out)
    sweep = sw.open_sweep(args.target, out=args.out)
    sweep.reuse_older = args.reuse_older
    st = sw.sweep_status(sweep)
    if args.json:
        print(json.dumps(dict(st, kind=sweep.kind, done_count=len(st["done"]), pending_count=len(st["pending"]),
                              failed_count=len(st["failed"]))))
        return 0
    print(f"sweep {sweep.source} ({sweep.kind}, {st['total']} points) in {sweep.out}")
    print(f"done {len(st['done'])}, pending {len(st['pending'])}, failed {len(st['failed'])}")
    for f in st["failed"]:
        print(f"  failed: {f['name']}: {f['message']}")
    if st["other_files"]:
        print(f"({st['other_files']} other point files in the folder belong to other configurations)")
    return 0


def _collect(args) -> int:
    from .. import sweep as sw

    sw._import_xarray()  # before anything else: a missing extra is one sentence, exit 2
    if args.out is not None:
        _check_out(args.out)
    if args.output is not None:
        output = Path(args.output)
        if not str(args.output).strip() or output.is_dir():
            raise InvalidParameterError(f"--output {args.output!r} must name a file (FILE.nc).")
        check_output_dir(output.parent if str(output.parent) else ".", "the folder of --output")
    sweep = sw.open_sweep(args.target, out=args.out)
    sweep.reuse_older = args.reuse_older
    if not sweep.out.is_dir():
        raise InvalidParameterError(f"{sweep.out} does not exist; run `rfdm sweep run` first.")
    warn = None if args.quiet else (lambda m: print(f"rfdm: warning: {m}", file=sys.stderr))
    ds = sw.collect(sweep, strict=args.strict, warn=warn)
    path = sw.write_netcdf(ds, args.output if args.output else sweep.out / "collected.nc")
    if args.json:
        print(json.dumps({"file": str(path), "dims": {k: int(v) for k, v in ds.sizes.items()},
                          "variables": list(ds.data_vars), "points_total": ds.attrs["points_total"],
                          "points_missing": ds.attrs["points_missing"]}))
    elif not args.quiet:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _kinds(args) -> int:
    from ..results import to_jsonable
    from ..sweep import KINDS

    if args.json:
        print(json.dumps(to_jsonable({name: {"description": k.description, "defaults": k.defaults}
                                      for name, k in KINDS.items()})))
        return 0
    for name, k in KINDS.items():
        print(f"{name}: {k.description}")
        for key, value in k.defaults.items():
            shown = list(value) if isinstance(value, tuple) else value
            print(f"    {key} = {json.dumps(to_jsonable(shown))}")
    return 0
