"""Verdict logic of rfdm.published.claims on agreeing, differing, non-converged and interval inputs."""

import json
import math

import pytest

from rfdm.errors import InvalidParameterError
from rfdm.published.claims import (AGREES, DIFFERS, NO_PUBLISHED, NOT_CONVERGED, Check, FigureClaim, Tolerance,
                                   internal_disagreement, worst)

READ = Tolerance(relative=0.1, reason="'≈' read off a plot")


def test_relative_tolerance_agrees_and_differs():
    assert Check("ρ₂ left edge", 10.0, "[B25] Fig. 4 caption", 9.84, READ).verdict == AGREES
    c = Check("ρ₂ left edge", 10.0, "[B25] Fig. 4 caption", 8.0, READ, difference_reason="other setting")
    assert c.verdict == DIFFERS
    assert "other setting" in c.reason and "8" in c.reason
    # boundary: 10 % of 10 is 1, so 11.0 agrees and 11.01 does not
    assert Check("x", 10.0, "s", 11.0, READ).verdict == AGREES
    assert Check("x", 10.0, "s", 11.01, READ).verdict == DIFFERS


def test_absolute_and_interval_tolerances():
    tol = Tolerance(absolute=0.15, reason="3 standard errors of the fitted slope (SE 0.05)")
    assert Check("τ_mem slope", 1.0, "[B25] Thm 3.2", 1.12, tol).verdict == AGREES
    assert Check("τ_mem slope", 1.0, "[B25] Thm 3.2", 1.5, tol).verdict == DIFFERS
    box = Tolerance(interval=(-0.1, 0.1), reason="flat within 3 SE")
    assert Check("τ_gen slope", 0.0, "[B25] Sec. 3", 0.05, box).verdict == AGREES
    assert Check("τ_gen slope", 0.0, "[B25] Sec. 3", -0.3, box).verdict == DIFFERS


def test_published_interval():
    tol = Tolerance(relative=0.05, reason="reading")
    c = Check("ρ₂", (10.0, 45.0), "[B25] Fig. 4", 44.0, tol)
    assert c.acceptance == pytest.approx((9.5, 47.25))
    assert c.verdict == AGREES
    assert Check("ρ₂", (10.0, 45.0), "[B25] Fig. 4", 48.0, tol).verdict == DIFFERS
    assert Check("ρ₂", (10.0, 45.0), "[B25] Fig. 4", 9.0, tol).verdict == DIFFERS


def test_not_converged_and_no_published():
    assert Check("τ_mem", 1.0, "s", None, READ).verdict == NOT_CONVERGED
    assert Check("τ_mem", 1.0, "s", float("nan"), READ).verdict == NOT_CONVERGED
    assert Check("τ_mem", 1.0, "s", 1.0, READ, converged=False).verdict == NOT_CONVERGED
    assert Check("KS distance", None, "", 0.03).verdict == NO_PUBLISHED


def test_bad_inputs_raise():
    with pytest.raises(InvalidParameterError):
        Tolerance(reason="")  # none given
    with pytest.raises(InvalidParameterError):
        Tolerance(relative=0.1, absolute=1.0, reason="x")
    with pytest.raises(InvalidParameterError):
        Tolerance(relative=0.1, reason="  ")
    with pytest.raises(InvalidParameterError):
        Check("x", 1.0, "s", 1.0)  # published value without tolerance
    with pytest.raises(InvalidParameterError):
        Check("x", (2.0, 1.0), "s", 1.0, READ)  # reversed interval
    with pytest.raises(InvalidParameterError):
        internal_disagreement("τ_mem", ("a", 1.0), ("b", 2.0), READ, "")
    with pytest.raises(InvalidParameterError):
        worst(["fine"])


def test_internal_disagreement():
    tol = Tolerance(relative=0.2, reason="the two readings agree to O(1)")
    ok = internal_disagreement("τ_mem", ("loss curves", 1.1e4), ("spectrum", 1.0e4), tol, "different definitions")
    assert ok.verdict == AGREES and ok.kind == "internal"
    bad = internal_disagreement("τ_mem", ("loss curves", 3e3), ("spectrum", 1.0e4), tol, "half-gap time vs slowest mode")
    assert bad.verdict == DIFFERS and "half-gap time vs slowest mode" in bad.reason
    ratio = internal_disagreement("τ_mem", ("curves", 2.0), ("spectrum", 1.0),
                                  Tolerance(interval=(0.1, 1.0), reason="a constant factor below 1"), "why")
    assert ratio.measured_value == 2.0 and ratio.verdict == DIFFERS
    missing = internal_disagreement("τ_mem", ("curves", None), ("spectrum", 1.0), tol, "why")
    assert missing.verdict == NOT_CONVERGED


def test_figure_claim_worst_and_report_entry():
    fig = FigureClaim("B25-fig4", "bulk between 10 and 45", {"ψ_p": 64, "d": 100}, {"ψ_p": 64, "d": 16})
    fig.add(Check("ρ₂ left edge", 10.0, "[B25] Fig. 4 caption", 9.84, READ))
    assert fig.verdict == AGREES
    fig.add(Check("KS", None, "", 0.02))
    assert fig.verdict == AGREES  # an informational row does not lower the verdict
    only_info = FigureClaim("x", "c", {}, {}, [Check("KS", None, "", 0.02)])
    assert only_info.verdict == NO_PUBLISHED
    fig.add(Check("ρ₂ right edge", 45.0, "[B25] Fig. 4 caption", 60.0, READ, difference_reason="why"))
    assert fig.verdict == DIFFERS
    # an internal disagreement does not change the verdict but appears in the reason
    fig.add(internal_disagreement("τ_mem", ("a", 1.0), ("b", 5.0), READ, "explained"))
    assert fig.verdict == DIFFERS and "(internal)" in fig.reason and "explained" in fig.reason
    fig.add(Check("τ_mem", 1.0, "s", None, READ, note="solver failed"))
    assert fig.verdict == NOT_CONVERGED and "solver failed" in fig.reason
    entry = fig.to_report_entry()
    assert set(entry) == {"id", "setting", "published", "measured", "tolerance", "verdict", "reason", "checks"}
    assert entry["setting"]["same_as_published"] is False
    assert entry["published"]["ρ₂ left edge"] == {"value": 10.0, "source": "[B25] Fig. 4 caption"}
    assert len(entry["checks"]) == 5
    json.dumps(entry, allow_nan=False)  # plain JSON
    assert worst([]) == NO_PUBLISHED
    assert math.isclose(entry["measured"]["ρ₂ left edge"], 9.84)
