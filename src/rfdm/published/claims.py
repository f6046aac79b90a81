"""Verdicts: a measured number against a published one, with a stated tolerance.

A :class:`Check` compares one measured quantity with its published value (a number, an interval, or none)
and computes a verdict:

* ``"agrees"``  — the measured value lies within the tolerance of the published value (for a published
  interval [lo, hi]: within [lo - tol(lo), hi + tol(hi)]);
* ``"differs"`` — it lies outside; the check carries the reason (why the two differ, when it is known);
* ``"no published number"`` — the paper states no number for this quantity (the measured value is shown);
* ``"not converged"`` — the computation behind the measured value did not converge or gave no finite
  number; nothing is compared.

A tolerance (:class:`Tolerance`) is relative (allowed deviation r |published|), absolute (a fixed a), or
an explicit acceptance interval [lo, hi] for the measured value, and always carries its reason (a
statistical error, or how precisely a number can be read off a published plot, e.g. "≈ 10").

:func:`internal_disagreement` compares two readings of one quantity made by the project itself (e.g. τ_mem
from the spectrum and from the loss curves); when they differ the explanation is mandatory, so two numbers
are never left side by side silently.

A :class:`FigureClaim` groups the checks of one published figure with its published and measured
settings.  Its overall verdict is the worst verdict among its checks against the papers, in the order
agrees < no published number < differs < not converged (a figure whose solver did not converge cannot be
said to agree or differ); checks without a published number are shown but only decide the verdict
("no published number") when the figure has no other; internal checks are reported beside them and never change that verdict, but a
differing internal check is always named in the figure's reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InvalidParameterError
from ..results import to_jsonable

AGREES = "agrees"
DIFFERS = "differs"
NO_PUBLISHED = "no published number"
NOT_CONVERGED = "not converged"
#: verdicts from best to worst
VERDICT_ORDER = (AGREES, NO_PUBLISHED, DIFFERS, NOT_CONVERGED)


def is_finite_number(x) -> bool:
    """True when ``x`` converts to a finite float (None, NaN, inf and non-numbers are not)."""
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Tolerance:
    """Allowed deviation of a measured value from a published one.

    Exactly one of ``relative`` (deviation <= r |published|), ``absolute`` (deviation <= a) or ``interval``
    (the measured value must lie in [lo, hi], whatever the published value) is given, with ``reason``: why
    this much (a standard error, the precision of a number read off a plot, a finite-size correction)."""

    reason: str
    relative: float | None = None
    absolute: float | None = None
    interval: tuple | None = None

    def __post_init__(self):
        given = [x is not None for x in (self.relative, self.absolute, self.interval)]
        if sum(given) != 1:
            raise InvalidParameterError("a tolerance is exactly one of relative, absolute or interval.")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise InvalidParameterError("a tolerance needs its reason (a statistical error or a reading precision).")
        for name in ("relative", "absolute"):
            v = getattr(self, name)
            if v is not None and (not is_finite_number(v) or float(v) < 0):
                raise InvalidParameterError(f"a {name} tolerance must be a finite number >= 0, got {v!r}.")
        if self.interval is not None:
            lo, hi = self.interval
            if not (is_finite_number(lo) and is_finite_number(hi)) or float(lo) > float(hi):
                raise InvalidParameterError(f"a tolerance interval must be finite with lo <= hi, got {self.interval!r}.")
            object.__setattr__(self, "interval", (float(lo), float(hi)))

    def allowed(self, reference: float) -> float:
        """The allowed deviation around ``reference`` (relative or absolute tolerances)."""
        if self.relative is not None:
            return float(self.relative) * abs(float(reference))
        return float(self.absolute)

    def describe(self) -> dict:
        if self.relative is not None:
            kind, value = "relative", float(self.relative)
        elif self.absolute is not None:
            kind, value = "absolute", float(self.absolute)
        else:
            kind, value = "interval", list(self.interval)
        return {"kind": kind, "value": value, "reason": self.reason}


def _check_published(published):
    if published is None:
        return None
    if isinstance(published, (tuple, list)):
        if len(published) != 2 or not all(is_finite_number(v) for v in published) or float(published[0]) > float(published[1]):
            raise InvalidParameterError(f"a published interval must be (lo, hi) with finite lo <= hi, got {published!r}.")
        return (float(published[0]), float(published[1]))
    if not is_finite_number(published):
        raise InvalidParameterError(f"a published value must be a finite number, an interval or None, got {published!r}.")
    return float(published)


@dataclass
class Check:
    """One measured quantity against its published value.

    ``name`` uses the papers' symbols (τ_mem, ψ_n, ρ₂); ``published`` is a number, an interval (lo, hi) or
    None; ``source`` says where it is printed (e.g. "[B25] Fig. 4 caption"); ``measured`` is the measured
    number (None or NaN: not available); ``converged`` is False when the computation behind it did not
    converge; ``difference_reason`` explains a difference when one is expected or understood."""

    name: str
    published: object
    source: str
    measured: object
    tolerance: Tolerance | None = None
    converged: bool = True
    difference_reason: str = ""
    note: str = ""
    kind: str = "published"
    reading_b: tuple | None = None  # internal checks: (label, value) of the second reading
    reading_a_label: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise InvalidParameterError("a check needs a name.")
        self.published = _check_published(self.published)
        if self.published is not None and self.tolerance is None:
            raise InvalidParameterError(f"the check {self.name!r} has a published value but no tolerance.")
        if self.published is not None and not self.source:
            raise InvalidParameterError(f"the check {self.name!r} has a published value but no source.")

    @property
    def measured_value(self) -> float | None:
        return float(self.measured) if is_finite_number(self.measured) else None

    @property
    def acceptance(self) -> tuple | None:
        """The interval of measured values that agree (None without a published value)."""
        if self.published is None or self.tolerance is None:
            return None
        if self.tolerance.interval is not None:
            return self.tolerance.interval
        if isinstance(self.published, tuple):
            lo, hi = self.published
            return (lo - self.tolerance.allowed(lo), hi + self.tolerance.allowed(hi))
        a = self.tolerance.allowed(self.published)
        return (self.published - a, self.published + a)

    @property
    def verdict(self) -> str:
        if not self.converged or self.measured_value is None:
            return NOT_CONVERGED
        if self.published is None:
            return NO_PUBLISHED
        lo, hi = self.acceptance
        return AGREES if lo <= self.measured_value <= hi else DIFFERS

    @property
    def reason(self) -> str:
        v = self.verdict
        if v == NOT_CONVERGED:
            return self.note or f"{self.name}: the computation did not converge or gave no finite value."
        if v == DIFFERS:
            lo, hi = self.acceptance
            base = (f"{self.name} = {self.measured_value:.4g} is outside the accepted range "
                    f"[{lo:.4g}, {hi:.4g}]")
            return base + (f": {self.difference_reason}" if self.difference_reason else " (reason not identified).")
        return ""

    def as_dict(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "published": self.published, "source": self.source,
               "measured": self.measured_value, "tolerance": self.tolerance.describe() if self.tolerance else None,
               "acceptance": self.acceptance, "verdict": self.verdict, "reason": self.reason}
        if self.note:
            out["note"] = self.note
        if self.kind == "internal":
            out["readings"] = {self.reading_a_label: self.measured_value,
                               self.reading_b[0]: float(self.reading_b[1]) if is_finite_number(self.reading_b[1]) else None}
        return to_jsonable(out)


def internal_disagreement(name: str, reading_a: tuple, reading_b: tuple, tol: Tolerance, explanation: str) -> Check:
    """Two readings of one quantity, ``reading_a`` = (label, value) and ``reading_b`` = (label, value),
    compared with the tolerance ``tol`` (relative to reading b, or absolute, or an interval for a/b when
    ``tol.interval`` is given).  ``explanation`` (mandatory) says why they may differ; it becomes the reason
    when they do.  Verdict: agrees / differs, or not converged when either reading is missing."""
    if not isinstance(explanation, str) or not explanation.strip():
        raise InvalidParameterError(f"an internal comparison of {name} needs its explanation.")
    (la, va), (lb, vb) = reading_a, reading_b
    ok = is_finite_number(va) and is_finite_number(vb)
    if tol.interval is not None:
        # compare the ratio a/b with the interval
        measured = float(va) / float(vb) if ok and float(vb) != 0 else None
        return Check(name=f"{name}: {la} / {lb}", published=1.0, source=f"internal: {lb}", measured=measured,
                     tolerance=tol, converged=ok, difference_reason=explanation, kind="internal",
                     reading_b=(lb, vb), reading_a_label=la,
                     note="" if ok else f"{name}: a reading is missing ({la} = {va}, {lb} = {vb}).")
    return Check(name=f"{name}: {la} vs {lb}", published=float(vb) if is_finite_number(vb) else None,
                 source=f"internal: {lb}", measured=va if ok else None, tolerance=tol, converged=ok,
                 difference_reason=explanation, kind="internal", reading_b=(lb, vb), reading_a_label=la,
                 note="" if ok else f"{name}: a reading is missing ({la} = {va}, {lb} = {vb}).")


def worst(verdicts) -> str:
    """The worst verdict (order agrees < no published number < differs < not converged)."""
    verdicts = list(verdicts)
    if not verdicts:
        return NO_PUBLISHED
    for v in verdicts:
        if v not in VERDICT_ORDER:
            raise InvalidParameterError(f"unknown verdict {v!r}.")
    return max(verdicts, key=VERDICT_ORDER.index)


@dataclass
class FigureClaim:
    """The checks of one published figure, with the published setting and the setting actually run."""

    id: str
    claim: str
    published_setting: dict
    measured_setting: dict
    checks: list = field(default_factory=list)

    def add(self, check: Check) -> Check:
        if not isinstance(check, Check):
            raise InvalidParameterError("a FigureClaim holds Check objects.")
        self.checks.append(check)
        return check

    @property
    def published_checks(self) -> list:
        return [c for c in self.checks if c.kind != "internal"]

    @property
    def internal_checks(self) -> list:
        return [c for c in self.checks if c.kind == "internal"]

    @property
    def verdict(self) -> str:
        """Worst verdict among the checks that compare with a published number; "no published number" only
        when no check has one (informational rows never lower a figure's verdict)."""
        compared = [c.verdict for c in self.published_checks if c.verdict != NO_PUBLISHED]
        return worst(compared) if compared else NO_PUBLISHED

    @property
    def reason(self) -> str:
        parts = [c.reason for c in self.published_checks if c.verdict in (DIFFERS, NOT_CONVERGED)]
        parts += [f"(internal) {c.reason}" for c in self.internal_checks if c.verdict in (DIFFERS, NOT_CONVERGED)]
        return " ".join(parts)

    @property
    def same_setting(self) -> bool:
        return all(self.measured_setting.get(k) == v for k, v in self.published_setting.items())

    def to_report_entry(self) -> dict:
        """{"id", "setting", "published", "measured", "tolerance", "verdict", "reason", "checks"}."""
        return to_jsonable({
            "id": self.id,
            "setting": {"published": self.published_setting, "measured": self.measured_setting,
                        "same_as_published": self.same_setting},
            "published": {c.name: {"value": c.published, "source": c.source} for c in self.checks},
            "measured": {c.name: c.measured_value for c in self.checks},
            "tolerance": {c.name: c.tolerance.describe() if c.tolerance else None for c in self.checks},
            "verdict": self.verdict,
            "reason": self.reason,
            "checks": [c.as_dict() for c in self.checks],
        })

    def summary_lines(self) -> list:
        """One line per check, for a terminal."""
        lines = [f"{self.id}: {self.verdict}  ({self.claim})"]
        for c in self.checks:
            pub = "—" if c.published is None else (f"[{c.published[0]:.4g}, {c.published[1]:.4g}]"
                                                   if isinstance(c.published, tuple) else f"{c.published:.4g}")
            mv = "—" if c.measured_value is None else f"{c.measured_value:.4g}"
            lines.append(f"  {c.name}: measured {mv}, published {pub} ({c.source}) -> {c.verdict}")
        return lines
