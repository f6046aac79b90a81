"""The experiment protocol: typed, declarative configurations and the registry of experiments.

A configuration is a dataclass whose fields are declared with :func:`param`: each carries its default, its
help text, its unit and its constraints (:class:`Integer`, :class:`Real`, :class:`OneOf`,
:class:`FloatList`, :class:`WeightsSumToOne`, :class:`WholeTimes`, ...).  :func:`validate` checks every field
against its constraints and then the class's cross-field ``check()`` hook, raising
:class:`~rfdm.errors.InvalidParameterError` with one sentence.  Everything else is derived from these
declarations, so each default, choice list and help text exists once:

* the options of a command (:func:`add_options` / :func:`config_from_args` in ``rfdm.cli.common``),
* the parameters and defaults of a sweep kind (:func:`defaults`, ``rfdm.sweep.kinds``),
* the figure presets of ``rfdm.registry`` (:func:`make_config` with a preset's overrides).

An experiment is registered once with :func:`register` (config class, ``compute(config) -> Result``,
``plot(result, fig)``, optional sweep outputs); see docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Callable

import numpy as np

from .errors import InvalidParameterError

MISSING = dataclasses.MISSING


# -- constraints ---------------------------------------------------------------------------------------------

class Constraint:
    """One rule on one field: ``__call__(label, value, config)`` returns the normalised value or raises
    InvalidParameterError; ``describe()`` is the rule in a few words (shown in --help)."""

    def __call__(self, label: str, value, config):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return ""


def _bad(msg: str) -> InvalidParameterError:
    return InvalidParameterError(msg)


@dataclasses.dataclass(frozen=True)
class Integer(Constraint):
    """An integer in [lo, hi] (a float with an integral value is accepted); booleans are refused."""

    lo: int | None = None
    hi: int | None = None

    def _what(self, label: str = "it") -> str:
        if self.lo == 1 and self.hi is None:
            return "a positive integer"
        if self.lo == 1 and self.hi == MAX_COUNT:
            return f"a positive integer (at most {MAX_COUNT:,})"
        if self.hi is None:
            return "an integer" if self.lo is None else f"an integer with {label} >= {self.lo}"
        if self.hi == MAX_COUNT and self.lo is not None:
            return f"an integer with {label} >= {self.lo} (at most {MAX_COUNT:,})"
        return f"an integer in [{self.lo}, {self.hi}]"

    def __call__(self, label, value, config):
        if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise _bad(f"{label} must be {self._what(label)}, got {value!r}.")
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise _bad(f"{label} must be {self._what(label)}, got {value}.")
        return int(value)

    def describe(self):
        return self._what()


#: seeds: integers >= 0 (numpy's SeedSequence refuses negative entropy)
SEED = Integer(0)
#: the largest count (dimension, sample size, steps, draws) a configuration accepts: beyond it no computation
#: fits in memory or time, so the value is a typo, refused before any work
MAX_COUNT = 10_000_000
POSITIVE_INT = Integer(1, MAX_COUNT)


@dataclasses.dataclass(frozen=True)
class Real(Constraint):
    """A finite number in an interval; ``lo_open``/``hi_open`` exclude the end points."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    allow_inf: bool = False

    def __call__(self, label, value, config):
        if isinstance(value, bool):
            raise _bad(f"{label} must be a number, got {value!r}.")
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise _bad(f"{label} must be a number, got {value!r}.") from None
        if math.isnan(x) or (math.isinf(x) and not (self.allow_inf and x > 0)):
            raise _bad(f"{label} must be finite, got {value!r}.")
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            raise _bad(f"{label} must be {'>' if self.lo_open else '>='} {self.lo:g}, got {x:g}.")
        if self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)):
            raise _bad(f"{label} must be {'<' if self.hi_open else '<='} {self.hi:g}, got {x:g}.")
        return x

    def describe(self):
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"in {left}{lo}, {hi}{right}"


#: the largest positive real parameter (psi, variances, |m|, learning rates): beyond it arithmetic overflows
MAX_REAL = 1e12
POSITIVE = Real(0.0, MAX_REAL, lo_open=True)
#: a relative tolerance, in (0, 1)
TOLERANCE = Real(0.0, 1.0, lo_open=True, hi_open=True)
#: a ratio of distances or a probability-like threshold, in (0, 1]
RATIO = Real(0.0, 1.0, lo_open=True)


@dataclasses.dataclass(frozen=True)
class OneOf(Constraint):
    """One of a fixed list of strings (or of the names a callable returns, e.g. the registered activations)."""

    choices: tuple | Callable[[], tuple]

    def values(self) -> tuple:
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def __call__(self, label, value, config):
        values = self.values()
        if value not in values:
            raise _bad(f"unknown {label} {value!r}: choose one of {', '.join(values)} (invalid choice).")
        return value

    def describe(self):
        return "one of " + ", ".join(self.values())


@dataclasses.dataclass(frozen=True)
class FloatList(Constraint):
    """A non-empty list of numbers (a scalar is a list of one), each obeying ``item``; returned as a tuple."""

    item: Constraint | None = None
    sort: bool = False

    def __call__(self, label, value, config):
        if isinstance(value, str):
            raise _bad(f"{label} must be a list of numbers, got {value!r}.")
        items = [value] if np.ndim(value) == 0 else list(np.asarray(value, dtype=object).ravel())
        if not items:
            raise _bad(f"{label} must not be empty.")
        out = []
        for v in items:
            if v is None:
                raise _bad(f"{label} has an empty item.")
            out.append(self.item(label, v, config) if self.item is not None else Real(allow_inf=True)(label, v, config))
        return tuple(sorted(out) if self.sort else out)

    def describe(self):
        return "a comma-separated list" + (f", each {self.item.describe()}" if self.item is not None else "")


@dataclasses.dataclass(frozen=True)
class Tau(Constraint):
    """Training times tau >= 0 (inf allowed); ``single``: exactly one.  Returned as a tuple (or a float)."""

    single: bool = False
    sort: bool = False

    def __call__(self, label, value, config):
        try:
            arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise _bad(f"{label} must be numbers, got {value!r}.") from None
        if arr.ndim != 1 or arr.size == 0:
            raise _bad(f"{label} must be a number or a non-empty list of numbers.")
        if np.any(np.isnan(arr)) or np.any(arr < 0):
            raise _bad(f"{label} must be >= 0 (inf allowed), got a negative or NaN value.")
        if self.single:
            if arr.size != 1:
                raise _bad(f"{label} takes one value here (a sampling run has one training time), got {arr.size}.")
            return float(arr[0])
        return tuple(float(x) for x in (np.sort(arr) if self.sort else arr))

    def describe(self):
        return "one time >= 0 or inf" if self.single else "times >= 0, inf allowed"


@dataclasses.dataclass(frozen=True)
class WeightsSumToOne(Constraint):
    """Weights of the list in field ``of``: as many, each >= 0, summing to 1 (to 1e-9)."""

    of: str

    def __call__(self, label, value, config):
        w = FloatList(Real(0.0))(label, value, config)
        ref = getattr(config, self.of)
        n = 1 if np.ndim(ref) == 0 else len(ref)
        if len(w) != n:
            raise _bad(f"{len(w)} weights given for {n} covariance eigenvalues.")
        if abs(sum(w) - 1.0) > 1e-9:
            raise _bad(f"covariance weights must be >= 0 and sum to 1, got sum {sum(w):g}.")
        return w

    def describe(self):
        return f"one weight >= 0 per entry of {self.of}, summing to 1"


@dataclasses.dataclass(frozen=True)
class WholeTimes(Constraint):
    """psi (or each psi of a list) times the integer field ``of`` (a dimension) must be a positive whole
    number: p = psi_p d, n = psi_n d.  Skipped while ``of`` is None."""

    of: str = "d"

    def __call__(self, label, value, config):
        d = getattr(config, self.of)
        if d is None:
            return value
        for psi in (value if isinstance(value, tuple) else (value,)):
            whole_number(label, psi, d, self.of)
        return value

    def describe(self):
        return f"times {self.of} a whole number"


def whole_number(label: str, psi: float, d: int, dim: str = "d") -> int:
    """psi * d as a positive whole number, else InvalidParameterError (the one place this rule is written)."""
    v = float(psi) * int(d)
    if not math.isfinite(v) or abs(v - round(v)) > 1e-9 or round(v) < 1:
        raise _bad(f"{label} * {dim} = {v:g} is not a positive whole number.")
    return int(round(v))


# -- text forms (the CLI's and a sweep file's spelling of lists) -------------------------------------------

def parse_float_list(text: str, name: str) -> tuple:
    """'1,2.5,4' -> (1.0, 2.5, 4.0); an empty item ('2,,4', '1,') is refused."""
    items = [v.strip() for v in str(text).split(",")]
    if not any(items):
        raise InvalidParameterError(f"{name} is empty.")
    if not all(items):
        raise InvalidParameterError(f"{name} has an empty item in {text!r}.")
    try:
        return tuple(float(v) for v in items)
    except ValueError:
        raise InvalidParameterError(f"{name} must be a comma-separated list of numbers, got {text!r}.") from None


def parse_tau(text: str, name: str = "--tau") -> tuple:
    """Times: comma-separated items, each a number, 'inf', or a log range START:STOP:NUM (NUM values
    log-spaced from START to STOP), e.g. '1e-1:1e6:200,inf'.  Empty items are refused."""
    out = []
    items = [s.strip() for s in str(text).split(",")]
    if not any(items):
        raise InvalidParameterError(f"{name} is empty.")
    if not all(items):
        raise InvalidParameterError(f"{name} has an empty item in {text!r}.")
    for item in items:
        if ":" in item:
            parts = item.split(":")
            try:
                if len(parts) != 3:
                    raise ValueError
                start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
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
    if any(math.isnan(x) or x < 0 for x in out):
        raise InvalidParameterError(f"{name} values must be >= 0.")
    return tuple(out)


# -- declared fields -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Spec:
    """What :func:`param` attaches to a field (``field.metadata["rfdm"]``)."""

    help: str
    unit: str | None = None
    checks: tuple = ()
    optional: bool = False       # None is a valid value (meaning: not given / derived)
    label: str | None = None     # the name used in messages (default: the field name)
    flag: str | None = None      # the CLI flag (default --field-name); False: no CLI option
    cli: bool = True
    parse: str | None = None     # how the CLI text is read: "floats", "tau", "tau1" (one time), or None (the type)
    metavar: str | None = None
    sweep: bool = True           # may be a sweep parameter
    ratio: tuple | None = None   # (flag, default psi, dimension field): a count given by --x or --psi-x * d
    show_default: str | None = None  # the default as shown in --help when it is not the value itself

    def choices(self) -> tuple | None:
        for c in self.checks:
            if isinstance(c, OneOf):
                return c.values()
        return None


def param(default=MISSING, help: str = "", *, unit=None, check=(), optional=False, label=None, flag=None,
          cli=True, parse=None, metavar=None, sweep=True, factory=None, ratio=None, show_default=None):
    """A declared configuration field: its default (or ``factory`` for a tuple built at run time), help text,
    unit and constraints (a Constraint or a tuple of them), and how the CLI and sweeps expose it."""
    checks = tuple(check) if isinstance(check, (tuple, list)) else (check,)
    spec = Spec(help=help, unit=unit, checks=checks, optional=optional, label=label, flag=flag, cli=cli,
                parse=parse, metavar=metavar, sweep=sweep, ratio=ratio, show_default=show_default)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"rfdm": spec})
    return dataclasses.field(default=default, metadata={"rfdm": spec})


def specs(cls) -> dict:
    """{field name: (dataclasses.Field, Spec)} of the declared fields of a config class, in order."""
    return {f.name: (f, f.metadata["rfdm"]) for f in dataclasses.fields(cls) if "rfdm" in f.metadata}


def default_of(field: dataclasses.Field):
    """The current default of a field (read at call time, so a changed default reaches every front end)."""
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    return MISSING


def defaults(cls, sweepable_only: bool = False) -> dict:
    """{name: default} of the declared fields (the sweep kind's parameters use ``sweepable_only``)."""
    return {name: default_of(f) for name, (f, s) in specs(cls).items() if s.sweep or not sweepable_only}


def make_config(cls, **overrides):
    """An instance of ``cls`` with every declared field taken from ``overrides`` or its current declared
    default (not the default frozen into ``__init__``), then validated."""
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise InvalidParameterError(f"{cls.__name__} has no parameter {', '.join(sorted(unknown))}.")
    values = {name: default_of(f) for name, (f, _) in specs(cls).items()}
    values.update(overrides)
    return cls(**values)


def validate(config) -> None:
    """Check every declared field against its constraints (normalising in place: ints, floats, tuples),
    then the class's cross-field ``check()``; the first violation raises InvalidParameterError (one
    sentence).  Config classes call this from ``__post_init__``."""
    for name, (field, spec) in specs(type(config)).items():
        value = getattr(config, name)
        if value is None:
            if spec.optional or spec.ratio is not None:
                continue
            raise _bad(f"{spec.label or name} must be given.")
        for rule in spec.checks:
            value = rule(spec.label or name, value, config)
        object.__setattr__(config, name, value)
    for name, (field, spec) in specs(type(config)).items():
        if spec.ratio is not None and getattr(config, name) is None:  # p from psi_p * d by default
            _, psi, dim = spec.ratio
            object.__setattr__(config, name, whole_number(f"psi_{name}", psi, getattr(config, dim), dim))
    check = getattr(config, "check", None)
    if check is not None:
        check()


class Config:
    """Base of the declared configurations: ``__post_init__`` validates; :meth:`as_dict` is the resolved
    configuration recorded with a result."""

    def __post_init__(self):
        validate(self)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- seeds ---------------------------------------------------------------------------------------------------

def stable_hash(name: str) -> int:
    """A 32-bit integer from a name, the same on every machine and Python (sha256, not hash())."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


class SeedStreams:
    """Named, independent child streams of one seed.

    ``streams.generator(name)`` is ``default_rng(SeedSequence([seed, stable_hash(name)]))``: adding a stream
    never changes the others.  ``SeedStreams.ordered(seed, names)`` keeps the older convention
    ``SeedSequence(seed).spawn(len(names))`` (the i-th name gets the i-th child), used where published or
    tested numbers depend on it."""

    def __init__(self, seed, children: dict | None = None):
        self.seed = seed
        self._children = dict(children or {})

    @classmethod
    def ordered(cls, seed, names) -> "SeedStreams":
        names = tuple(names)
        return cls(seed, dict(zip(names, np.random.SeedSequence(seed).spawn(len(names)))))

    def sequence(self, name: str) -> np.random.SeedSequence:
        if name in self._children:
            return self._children[name]
        entropy = list(self.seed) if isinstance(self.seed, (list, tuple)) else [int(self.seed)]
        return np.random.SeedSequence(entropy + [stable_hash(name)])

    def generator(self, name: str) -> np.random.Generator:
        return np.random.default_rng(self.sequence(name))

    def __getitem__(self, name: str) -> np.random.SeedSequence:
        return self.sequence(name)


# -- results -------------------------------------------------------------------------------------------------

from .results import Result  # noqa: E402  (the typed result lives with the save/load that read and write it)


# -- the registry of experiments -----------------------------------------------------------------------------

@dataclasses.dataclass
class Experiment:
    """One registered experiment.

    name : the command / sweep-kind name.  config : the config class.  compute : ``compute(config) -> Result``.
    plot : ``plot(result, fig)`` draws on a matplotlib Figure (never selects a backend).  stem : the file stem
    of its saved result.  command : also an `rfdm NAME` command whose options are the config's fields.  sweep : ``sweep(result, config) -> {scalars, vectors, coords, info}`` (None: not
    sweepable); sweep_params : the fields a sweep may set (default: every field declared sweepable);
    descriptions : {sweep output: one line}.  presets : {preset name: {field: value}}.
    """

    name: str
    config: type
    compute: Callable[[Any], Any]
    plot: Callable | None = None
    stem: str | None = None
    summary: Callable | None = None
    sweep: Callable | None = None
    sweep_params: tuple | None = None
    sweep_overrides: Callable | None = None
    descriptions: dict = dataclasses.field(default_factory=dict)
    description: str = ""
    command: bool = False  # a generated `rfdm NAME` command (compute, save, the --json summary)
    help: str = ""  # the command's one-line help
    long_description: str = ""  # the command's --help description
    saver: Callable | None = None  # ``saver(result, out_dir) -> paths`` when the generic save does not fit

    def save(self, result, out_dir) -> dict:
        """Write the result (the experiment's own saver, else the generic rfdm.results.save_result under this
        experiment's stem, with its plot); returns the paths written."""
        if self.saver is not None:
            return self.saver(result, out_dir)
        from .results import save_result

        return save_result(result, out_dir, self.stem or self.name, self.plot)

    def json_summary(self, result) -> dict:
        """The --json object of a result: the experiment's summary, else the result's summary with its
        provenance (config, version, seed)."""
        if self.summary is not None:
            return self.summary(result)
        header = result.header
        return dict(result.summary, config=header["config"], version=header["version"], seed=header["seed"])

    def sweep_defaults(self) -> dict:
        """The parameters of this experiment's sweep kind with their current defaults."""
        allowed = defaults(self.config, sweepable_only=True)
        if self.sweep_params is not None:
            allowed = {k: v for k, v in allowed.items() if k in self.sweep_params}
        out = {}
        for name, value in allowed.items():
            spec = specs(self.config)[name][1]
            if spec.ratio is not None:  # a count: swept as its ratio psi = count / d
                name, value = spec.ratio[0].lstrip("-").replace("-", "_"), spec.ratio[1]
            if value is None and spec.parse in ("floats", "tau"):  # a list resolved by the config's check()
                value = getattr(make_config(self.config), name)
            out[name] = tuple(value) if isinstance(value, list) else value
        return out


EXPERIMENTS: dict[str, Experiment] = {}


def register(name: str, config: type, compute, **kw) -> Experiment:
    """Register an experiment (see :class:`Experiment`); a sweepable one becomes a sweep kind too."""
    exp = Experiment(name, config, compute, **kw)
    EXPERIMENTS[name] = exp
    return exp


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise InvalidParameterError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}.")
    return EXPERIMENTS[name]
