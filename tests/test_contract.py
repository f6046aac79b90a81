"""The command-line contract, for every command, with cases GENERATED from the argparse parser.

`rfdm.cli.build_parser()` is walked (every subcommand, nested ones included); for each of its actions the
cases follow from what argparse knows about it (type, choices, default, nargs, metavar, help text):

* int options: wrong type ("abc", "1.5", ""), nan, +-inf, negative, zero (unless 0 is the default or the
  option is a seed), huge (unless a seed);
* float options: wrong type, "", nan, +-inf, negative, zero (unless 0 is the default), huge (1e308);
* options with choices: "", an unknown choice; free-text options: "", "nonsense", "-1", "nan", and for
  comma lists (help says "comma") the empty items "2,,4" and ",", "1,nan", "1,-1";
* file arguments (".npy" in the help, a CONFIG.toml positional): missing, empty, text, wrong shape, NaN and
  inf inside, a folder, a path under a regular file, a pickled object array;
* output locations (--out, DIR and FILE.nc metavars): /proc/..., an existing regular file, a path under a
  regular file, the empty string;
* contradictory options: "X (instead of --Y)" given together with --Y; X-min above X-max; an option whose
  help ties it to a non-default choice of another option ("time-integrated: ...", "... for gd/adam") given
  without that choice;
* plus the regression cases named in issue 13 that are not of the kinds above (REGRESSIONS).

Each case is run in-process through `rfdm.cli.main(argv)` on top of a base command line (the required
positionals and a fresh --out), with stderr captured, and must: exit with status 2 (bad input) or 3
(numerical trouble), print exactly one non-empty line on stderr with no "Traceback", leave nothing new on
disk (in --out or elsewhere under the test's folder), and finish within BUDGET_S = 0.5 CPU seconds (a case
that is not rejected before computing is cut by an alarm and reported as slow; CPU time, not wall time, so a
busy machine does not make a rejection slow; a 5 s wall-clock cap catches a case that waits).  The count per command is printed;
every command has at least 20 cases.

Failures are collected into one report (printed), and any failure fails the test.  A generated case count
below 20 for a command, or an error of the harness itself, fails it too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from rfdm import cli

#: CPU seconds a case may use (process time, so that a busy machine does not turn a fast rejection into a slow
#: one); a wall-clock cap catches a case that waits instead of computing
BUDGET_S = 0.5
WALL_CAP_S = 5.0
MIN_CASES = 20
#: values that are valid by the mathematics although the generic rules would call them bad: |m| = 0 is the
#: Gaussian limit of the two-cluster mixture
VALID_EDGES = {("--m-norm", "0"), ("--m-tilde", "0")}
#: issue 13's cases that no generic rule produces (a value in range that still broke a command)
REGRESSIONS = [
    ("dynamics", ["dynamics", "--model", "time-integrated", "--t-nodes-max", "5"], "issue 13: --t-nodes-max 5"),
    ("sample", ["sample", "--T", "400"], "issue 13: --T 400 (overflow)"),
    ("sample", ["sample", "--threshold", "1.5"], "issue 13: --threshold 1.5 (a ratio is at most 1)"),
    ("dynamics", ["dynamics", "--method", "exact", "--lr", "0.1"], "issue 13: --lr with the exact method"),
]

TINY_SWEEP = """[sweep]
kind = "dynamics"
out = "tiny-results"
workers = 1
[fixed]
d = 4
t = 0.1
tau = [1.0]
[grid]
psi_n = [1.0]
"""


class _Timeout(BaseException):
    """Raised by the alarm when a case runs past its budget (BaseException: no `except Exception` eats it)."""


# -- walking the parser ---------------------------------------------------------------------------------------

def leaf_parsers(parser: argparse.ArgumentParser, path=()):
    """(command path, parser) for every leaf subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for action in subs:
        for name, sub in action.choices.items():
            yield from leaf_parsers(sub, path + (name,))


def long_name(action) -> str:
    return max(action.option_strings, key=len)


def is_flag(action) -> bool:
    return action.nargs == 0


def help_of(action) -> str:
    return action.help or ""


def is_seed(action) -> bool:
    return action.dest == "seed" or action.default == 0


def is_output_dir(action) -> bool:
    return action.dest in ("out", "gallery") or (action.metavar or "") == "DIR"


def is_output_file(action) -> bool:
    return (action.metavar or "").lower().endswith(".nc")


def is_npy(action) -> bool:
    return ".npy" in help_of(action) or ".npy" in (action.metavar or "")


def is_toml(action) -> bool:
    return ".toml" in (action.metavar or "").lower()


def valid_value(action) -> str | None:
    """A value of the option that is valid on its own (its default, else a small positive number)."""
    if action.default is not None and not isinstance(action.default, bool):
        return str(action.default)
    if action.type is int:
        return "4"
    if action.type is float:
        return "2.0"
    return None


# -- inputs on disk ----------------------------------------------------------------------------------------------

def make_inputs(root: Path) -> dict:
    """Files the cases point at: a valid tiny sweep (already run, for status/collect), bad .npy and .toml files."""
    inp = root / "inputs"
    inp.mkdir()
    regular = inp / "regular_file.txt"
    regular.write_text("not a folder\n")
    f = {"regular": regular, "under_file": regular / "sub", "folder": inp / "a_folder.npy"}
    f["folder"].mkdir()
    (inp / "empty.npy").write_bytes(b"")
    (inp / "text.npy").write_text("1 2 3\n4 5 6\n")
    np.save(inp / "one_d.npy", np.arange(6.0))
    np.save(inp / "three_d.npy", np.zeros((2, 3, 4)))
    bad = np.random.default_rng(0).standard_normal((20, 4))
    bad[3, 2] = np.nan
    np.save(inp / "nan.npy", bad)
    bad[3, 2] = np.inf
    np.save(inp / "inf.npy", bad)
    np.save(inp / "one_row.npy", np.ones((1, 4)))
    np.save(inp / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    cfg = inp / "tiny.toml"
    cfg.write_text(TINY_SWEEP)
    (inp / "empty.toml").write_text("")
    (inp / "garbage.toml").write_text("[[[ not toml\n")
    (inp / "nan.toml").write_text(TINY_SWEEP.replace("d = 4", "d = nan"))
    (inp / "wrong_type.toml").write_text(TINY_SWEEP.replace("d = 4", 'd = "four"'))
    (inp / "folder.toml").mkdir()
    f.update(config=cfg, inputs=inp)
    return f


def npy_cases(f) -> list[tuple[str, str]]:
    inp = f["inputs"]
    return [(str(inp / "missing.npy"), "file: missing"), (str(inp / "empty.npy"), "file: empty"),
            (str(inp / "text.npy"), "file: text named .npy"), (str(inp / "one_d.npy"), "file: 1-D array"),
            (str(inp / "three_d.npy"), "file: 3-D array"), (str(inp / "nan.npy"), "file: NaN inside"),
            (str(inp / "inf.npy"), "file: inf inside"), (str(inp / "one_row.npy"), "file: one row"),
            (str(inp / "object.npy"), "file: pickled object array"), (str(f["folder"]), "file: a folder"),
            (str(f["under_file"]) + ".npy", "file: path under a regular file")]


def toml_cases(f) -> list[tuple[str, str]]:
    inp = f["inputs"]
    return [(str(inp / "missing.toml"), "file: missing"), (str(inp / "empty.toml"), "file: empty"),
            (str(inp / "garbage.toml"), "file: not TOML"), (str(inp / "nan.toml"), "file: NaN inside"),
            (str(inp / "wrong_type.toml"), "file: wrong type inside"), (str(inp / "folder.toml"), "file: a folder"),
            (str(f["under_file"]) + ".toml", "file: path under a regular file")]


def output_cases(f, file_like: bool) -> list[tuple[str, str]]:
    suffix = ".nc" if file_like else ""
    where = [("/proc/rfdm-contract" + suffix, "output: under /proc (unwritable)"),
             (str(f["under_file"]) + suffix, "output: path under a regular file"), ("", "output: empty string")]
    if file_like:
        where.append((str(f["folder"]), "output: an existing folder"))
    else:
        where.append((str(f["regular"]), "output: an existing regular file"))
    return where


# -- generating the cases -----------------------------------------------------------------------------------------

def value_cases(action) -> list[tuple[str, str]]:
    """(value, what) for one option, from its argparse type, choices, default and help."""
    name = long_name(action)
    out = []
    if action.type is int:
        out += [("abc", "type: not a number"), ("1.5", "type: not an integer"), ("", "empty"),
                ("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("-3", "negative")]
        if not is_seed(action):
            out += [("0", "zero"), ("1000000000000", "huge")]
    elif action.type is float:
        out += [("abc", "type: not a number"), ("", "empty"), ("nan", "nan"), ("inf", "inf"),
                ("-inf", "-inf"), ("-1", "negative"), ("1e308", "huge")]
        if action.default != 0 and (name, "0") not in VALID_EDGES:
            out.append(("0", "zero"))
    elif action.choices:
        out += [("", "empty"), ("nonsense", "unknown choice")]
    else:
        out += free_text_cases(help_of(action))
        if "comma" in help_of(action):
            out += [("2,,4", "list: empty item"), (",", "list: only separators"), ("1,nan", "list: nan item"),
                    ("1,-1", "list: negative item")]
    return out


def free_text_cases(help_text: str) -> list[tuple[str, str]]:
    """Bad values of a free-text option; a value the help names as valid (e.g. 'inf' for --tau) is left out."""
    out = [("", "empty"), (" ", "blank"), ("nonsense", "type: nonsense text"), ("-1", "negative"),
           ("nan", "nan"), ("inf", "inf"), ("../..", "a path")]
    return [(v, what) for v, what in out if not (v.isalpha() and re.search(rf"\b{v}\b", help_text))]


def other_value(action) -> str | None:
    """A valid value of the option other than its default (a deliberate choice), or None."""
    if action.choices:
        rest = [c for c in action.choices if c != action.default]
        return str(rest[0]) if rest else None
    if action.default is None:
        return {int: "4", float: "2.0"}.get(action.type)
    if isinstance(action.default, bool) or isinstance(action.default, str):
        return None
    if action.type is int:
        return str(action.default + 1)
    if action.type is float:
        return repr(action.default * 1.5 if action.default else 1.0)
    return None


def tied_mode(action, opts) -> tuple[str, str] | None:
    """(--option, choice) when the help ties ``action`` to a non-default choice of another option: its help starts
    with "CHOICE: ..." (e.g. "time-integrated: smallest diffusion time") or says "... for CHOICE/CHOICE"."""
    words = set()
    head = re.match(r"^([\w\- /]+):", help_of(action))
    if head:
        words |= set(re.split(r"[ /]", head.group(1).strip()))
    words |= {w for m in re.finditer(r"\bfor ([\w\-/]+)", help_of(action)) for w in m.group(1).split("/")}
    for other_name, other in opts.items():
        if other is action or not other.choices or other.default not in other.choices or other.default in words:
            continue
        tied = [c for c in other.choices if c in words]
        if tied:
            return other_name, str(tied[0])
    return None


def contradictions(parser) -> list[tuple[list[str], str]]:
    opts = {long_name(a): a for a in parser._actions if a.option_strings and not a.help == argparse.SUPPRESS}
    out = []
    for name, a in opts.items():
        m = re.search(r"instead of (--[\w-]+)", help_of(a))
        if m and m.group(1) in opts and valid_value(a) and valid_value(opts[m.group(1)]):
            out.append(([name, valid_value(a), m.group(1), valid_value(opts[m.group(1)])],
                        f"contradiction: {name} with {m.group(1)}"))
        if name.endswith("-min") and name[:-4] + "-max" in opts:
            hi = opts[name[:-4] + "-max"]
            top = float(hi.default) if isinstance(hi.default, (int, float)) else 1.0
            mode = list(tied_mode(a, opts) or ())
            out.append((mode + [name, repr(2 * top), name[:-4] + "-max", repr(top)], f"contradiction: {name} > max"))
    # an option tied to a choice of another option, given with a value of its own while that option keeps its
    # default, which is not the choice
    for name, a in opts.items():
        value = None if is_flag(a) else other_value(a)
        mode = tied_mode(a, opts)
        if value is not None and mode is not None:
            out.append(([name, value], f"contradiction: {name} without {' '.join(mode)}"))
    return out


def generate(parser, f, figure_id: str | None) -> list[tuple[str, list[str], str]]:
    """(command label, argv, what) for every generated case."""
    cases = []
    for path, leaf in leaf_parsers(parser):
        label = path[0]
        positionals = [a for a in leaf._actions if not a.option_strings and a.nargs not in (0,)
                       and not isinstance(a, argparse._SubParsersAction)]
        options = [a for a in leaf._actions if a.option_strings and not is_flag(a)
                   and a.help != argparse.SUPPRESS]
        # the base: the required positionals (a valid value each) and, unless the command reads its output folder
        # from a config file, a fresh --out
        base_pos = []
        for a in positionals:
            if is_toml(a) or a.metavar and "OUT" in a.metavar:
                base_pos.append(str(f["config"]))
            elif figure_id is not None and a.nargs in (None, "?"):
                base_pos.append(figure_id)
        has_out = any(a.dest == "out" for a in options)
        reads_config = any(is_toml(a) or (a.metavar and "OUT" in a.metavar) for a in positionals)
        flags = {long_name(a) for a in leaf._actions if a.option_strings and is_flag(a)}
        tail = ["--quiet"] if "--quiet" in flags else []

        def base(skip_out=False):
            argv = [*path, *base_pos]
            if has_out and not reads_config and not skip_out:
                argv += ["--out", "{OUT}"]
            return argv + tail

        for i, a in enumerate(positionals):
            vals = (toml_cases(f) if is_toml(a) or (a.metavar and "OUT" in a.metavar)
                    else free_text_cases(help_of(a)))
            for v, what in vals:
                pos = list(base_pos)
                pos[i] = v
                argv = [*path, *pos] + (["--out", "{OUT}"] if has_out and not reads_config else []) + tail
                cases.append((label, argv, f"{a.metavar or a.dest}: {what}"))
        for a in options:
            name = long_name(a)
            if is_output_dir(a) or is_output_file(a):
                for v, what in output_cases(f, is_output_file(a)):
                    cases.append((label, base(skip_out=(a.dest == "out")) + [name, v], f"{name}: {what}"))
                continue
            # an option tied to a mode is tested with that mode on (where its value is used)
            mode = tied_mode(a, {long_name(o): o for o in options})
            prefix = list(mode) if mode else []
            vals = value_cases(a) + (npy_cases(f) if is_npy(a) else [])
            for v, what in vals:
                cases.append((label, base() + prefix + [name, v], f"{name}: {what}"))
        for extra, what in contradictions(leaf):
            cases.append((label, base() + extra, what))
    for label, argv, what in REGRESSIONS:
        cases.append((label, argv + ["--out", "{OUT}", "--quiet"], what))
    return cases


# -- running one case ----------------------------------------------------------------------------------------------

def tree(root: Path) -> set:
    return {(str(p), p.is_dir()) for p in root.rglob("*")}


def run_case(argv) -> dict:
    err, out = io.StringIO(), io.StringIO()

    def alarm(signum, frame):
        raise _Timeout()

    old_prof = signal.signal(signal.SIGPROF, alarm)
    old_alrm = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_PROF, BUDGET_S)
    signal.setitimer(signal.ITIMER_REAL, WALL_CAP_S)
    t0, c0 = time.perf_counter(), time.process_time()
    rc, escaped = None, None
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = cli.main(argv)
    except _Timeout:
        escaped = (f"slow: still running after {time.process_time() - c0:.2f} CPU s "
                   f"({time.perf_counter() - t0:.1f} s wall)")
    except SystemExit as exc:  # argparse's --help/--version, or a sys.exit deep inside
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - an exception that escaped main() is what we report
        escaped = f"exception escaped main(): {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, old_prof)
        signal.signal(signal.SIGALRM, old_alrm)
    return {"rc": rc, "stderr": err.getvalue(), "seconds": time.process_time() - c0,
            "wall": time.perf_counter() - t0, "escaped": escaped}


def judge(res, new_paths) -> str | None:
    if res["escaped"]:
        return res["escaped"]
    problems = []
    if res["rc"] not in (2, 3):
        problems.append(f"exit {res['rc']}")
    lines = [ln for ln in res["stderr"].splitlines() if ln.strip()]
    if "Traceback" in res["stderr"]:
        problems.append("traceback on stderr")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    if res["seconds"] > BUDGET_S:
        problems.append(f"slow ({res['seconds']:.2f} CPU s)")
    if new_paths:
        problems.append(f"left {len(new_paths)} new path(s), e.g. {sorted(new_paths)[0][0]}")
    if not problems:
        return None
    first = lines[0][:120] if lines else ""
    return "; ".join(problems) + (f" [stderr: {first}]" if first else "")


# -- the test ------------------------------------------------------------------------------------------------------

def _warm_up():
    """Import what the commands import lazily, so that the first case of a command is not charged for it."""
    import importlib
    import pkgutil

    import rfdm

    for mod in pkgutil.walk_packages(rfdm.__path__, "rfdm."):
        with contextlib.suppress(Exception):
            importlib.import_module(mod.name)
    for name in ("matplotlib.pyplot", "xarray", "submitit", "scipy.stats", "scipy.io", "scipy.optimize",
                 "scipy.integrate", "scipy.special", "scipy.linalg", "torch"):
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    with contextlib.suppress(Exception):  # an optimizer's first step imports more of torch (train-net)
        import torch

        w = torch.zeros(1, requires_grad=True)
        opt = torch.optim.Adam([w])
        (w ** 2).sum().backward()
        opt.step()


def test_every_command_answers_bad_input_fast_with_one_sentence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _warm_up()
    f = make_inputs(tmp_path)
    # the tiny sweep is run and collected once, so that `sweep status` and `sweep collect` have a valid base (and
    # the lazy imports of collect, xarray's above all, are not charged to a case: an alarm inside an import
    # would leave a half-imported module behind)
    assert cli.main(["sweep", "run", str(f["config"]), "--workers", "1", "--quiet"]) == 0
    assert cli.main(["sweep", "collect", str(f["config"]), "--quiet"]) == 0
    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        cli.main(["figure", "--list"])
    figure_id = listing.getvalue().split()[0] if listing.getvalue().split() else None

    cases = generate(cli.build_parser(), f, figure_id)
    counts = Counter(label for label, _, _ in cases)
    failures = defaultdict(list)
    passing_s = []
    t_start = time.perf_counter()
    for k, (label, argv, what) in enumerate(cases):
        out = tmp_path / "outs" / f"case{k}"
        argv = [str(out) if a == "{OUT}" else a for a in argv]
        before = tree(tmp_path)
        res = run_case(argv)
        new = tree(tmp_path) - before
        problem = judge(res, new)
        if problem is None:
            passing_s.append(res["seconds"])
        else:
            failures[label].append(f"{what}: rfdm {' '.join(a if a else repr(a) for a in argv)} -> {problem}")
        if "matplotlib.pyplot" in sys.modules:  # figures of a case cut short are never closed by the command
            sys.modules["matplotlib.pyplot"].close("all")
        for p in sorted(new, key=lambda q: -len(q[0])):  # clean up, so that one case does not hide the next
            path = Path(p[0])
            with contextlib.suppress(OSError):
                path.rmdir() if p[1] else path.unlink()
    total_s = time.perf_counter() - t_start

    lines = [f"contract cases per command ({len(cases)} in {total_s:.1f} s, budget {BUDGET_S:g} CPU s per case; "
             f"the slowest passing case took {max(passing_s, default=0.0):.3f} CPU s):"]
    for label in sorted(counts):
        lines.append(f"  {label:12s} {counts[label]:4d} cases, {len(failures[label]):3d} failing")
    n_fail = sum(len(v) for v in failures.values())
    if n_fail:
        lines.append(f"{n_fail} failing cases:")
        for label in sorted(failures):
            lines += [f"  [{label}] {msg}" for msg in failures[label]]
    report = "\n".join(lines)
    print("\n" + report)
    (Path(os.environ.get("RFDM_CONTRACT_REPORT", tmp_path / "contract_report.txt"))).write_text(report + "\n")

    top = {path[0] for path, _ in leaf_parsers(cli.build_parser())}
    assert set(counts) == top, f"commands without cases: {top - set(counts)}"
    few = {k: v for k, v in counts.items() if v < MIN_CASES}
    assert not few, f"fewer than {MIN_CASES} generated cases for {few}"
    if n_fail:
        pytest.fail(report)
