"""Benchmark: the spectrum of U (THEORY §3): rfdm's vectorised eta-continuation against per-point root finding
with epsilon-continuation (the published method).

Target (from the issue; case psi_p = 64, psi_n = 8, t = 0.01, tanh, Sigma = I, the [B25] Fig. 4 case):
  * q(lambda + i0) on the same 400 points inside the support, to the same accuracy: >= 100x faster than the
    per-point method;
  * the full density (SpectralProblem.solve: bulks, edges, atoms, density) on >= 2000 points in <= 1 s.

The baseline (written here, not part of rfdm): for each real lambda separately, the self-consistent equations
(the residuals of SpectralProblem._system, unknowns q and r complex, i.e. 4 real unknowns) are solved with
scipy.optimize.root(method="hybr") at z = lambda + i eps for 114 geometrically decreasing eps, each eps
warm-started from the previous solution, the first from q = -1/z, r = mean(Sigma eigenvalues) q.  eps runs
from 1 down to eps_min times the point's scale |lambda| + s_t^2 (the scale rfdm's own eta_min uses).
Variants:
  * published: eps_min = 1e-9, hybr's default xtol, finite-difference Jacobian (the published settings,
    about 0.08 s per point in the published code);
  * matched:   eps_min = rfdm's ETA_REL (1e-11), xtol = 1e-12: the same method pushed to rfdm's accuracy
    (the comparison "to the same accuracy" of the target);
  * matched_jac: as matched, with the analytic Jacobian of _system (a baseline more favourable than the
    published one; timed on the subset only unless --jac-full).

Accuracy: every method's density Im q/pi against a reference, rfdm's stieltjes at a smaller eta_min
(--ref-eta-rel, default 1e-13 relative); the reference's own eta error is estimated from the same
computation at 10x that eta.  A baseline point is on a wrong branch when Im q < 0, when its density is
< 1e-3 of the reference (the spurious real branch) or when its density is off by more than 1 % (any other
solution).

What is measured and what is extrapolated: rfdm's times are measured (median of --repeats runs).  The
baseline is first timed on an evenly spread subset of --baseline-subset points; if the remaining points fit
in --baseline-budget seconds they are run too and the full measured time is reported, otherwise the time on
all points is extrapolated linearly from the subset (flagged "extrapolated" in the output and the JSON).

Run:  python benchmarks/bench_spectrum.py            (default: both cases, 400 points, ~4-6 minutes on 2 cores)
      python benchmarks/bench_spectrum.py --quick    (Fig. 4 case, 40 points, baseline on 8 of them, seconds)
Writes benchmarks/results/bench_spectrum.json (bench_spectrum_quick.json with --quick; or --out).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

# One BLAS/OpenMP thread for both methods (set before NumPy is imported; an explicit setting wins): every
# timed block is then single-threaded, and its CPU time (time.process_time) is comparable across loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from scipy.optimize import root  # noqa: E402

import rfdm  # noqa: E402
from rfdm import spectrum as sp  # noqa: E402
from _common import Timer, contention_warning, loadavg, machine_info, print_table, write_json  # noqa: E402

NAME = "bench_spectrum"

CASES = {
    "fig4": {"psi_p": 64.0, "psi_n": 8.0, "t": 0.01, "activation": "tanh",
             "description": "[B25] Fig. 4: psi_p=64, psi_n=8, t=0.01, tanh, Sigma=I"},
    "small": {"psi_p": 8.0, "psi_n": 2.0, "t": 0.1, "activation": "tanh",
              "description": "psi_p=8, psi_n=2, t=0.1, tanh, Sigma=I"},
    "mp": {"psi_p": 64.0, "psi_n": 8.0, "t": 0.01, "activation": "tanh", "zero_a": True,
           "description": "Marchenko-Pastur check: the fig4 coefficients with a_t = b_t = 0, so U = s_t^2 I + "
                          "v_t^2 Omega Omega^T/n exactly (MP law of ratio psi_p/psi_n, closed form)"},
}


def make_problem(key):
    """Coefficients and SpectralProblem of a case; ``zero_a``: a_t = b_t = 0 (v_t^2, s_t^2 kept), where the
    self-consistent equations reduce to Marchenko-Pastur's."""
    case = CASES[key]
    coeffs = sp.gep_coefficients(case["activation"], case["t"])
    if case.get("zero_a"):
        coeffs = sp.GEPCoefficients(t=coeffs.t, sigma_x2=coeffs.sigma_x2, a=0.0, b=0.0, v2=coeffs.v2, s2=coeffs.s2,
                                    mu0=0.0, mu1=0.0, norm2=coeffs.s2 + coeffs.v2)
    return coeffs, sp.SpectralProblem(coeffs, case["psi_p"], case["psi_n"])


def marchenko_pastur(lam, coeffs, psi_p, psi_n):
    """Density of s2 I + v2 Omega Omega^T/n (Omega p x n Gaussian, c = p/n = psi_p/psi_n) at lam inside
    [lambda_-, lambda_+] = s2 + v2 (1 -+ sqrt(c))^2: sqrt((lambda_+ - lam)(lam - lambda_-))/(2 pi c v2 (lam - s2));
    the atom 1 - 1/c at s2 (c > 1) is not part of it."""
    c, s2, v2 = psi_p / psi_n, coeffs.s2, coeffs.v2
    lo, hi = s2 + v2 * (1 - math.sqrt(c)) ** 2, s2 + v2 * (1 + math.sqrt(c)) ** 2
    return np.sqrt(np.clip((hi - lam) * (lam - lo), 0, None)) / (2 * math.pi * c * v2 * (lam - s2)), (lo, hi)

#: a baseline point whose density is below this fraction of the reference sits on the spurious real branch
REAL_BRANCH_FRACTION = 1e-3
#: a baseline point whose relative density error exceeds this converged to some other (wrong) solution
WRONG_BRANCH_RTOL = 1e-2
#: the timed code is single-threaded: CPU/wall below this means it did not have a core to itself
CPU_OVER_WALL_THRESHOLD = 0.9


def contention(label, records, warnings):
    """Append _common.contention_warning's message for the first of ``records`` that shows contention."""
    for rec in records:
        msg = contention_warning(label, rec, threshold=CPU_OVER_WALL_THRESHOLD)
        if msg:
            warnings.append(msg)
            return


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="fig4,small", help=f"comma-separated, from {sorted(CASES)} (default both)")
    ap.add_argument("--points", type=int, default=400, help="points inside the support (default 400)")
    ap.add_argument("--n-points", type=int, default=2000, help="n_points of the timed solve() (default 2000)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of rfdm's stieltjes (default 5)")
    ap.add_argument("--solve-repeats", type=int, default=3, help="timed repeats of solve() (default 3)")
    ap.add_argument("--baseline-steps", type=int, default=114, help="eps values per point (default 114)")
    ap.add_argument("--baseline-eps-min", type=float, default=1e-9,
                    help="smallest eps of the published variant, relative to |lambda| + s_t^2 (default 1e-9)")
    ap.add_argument("--baseline-subset", type=int, default=40,
                    help="points (evenly spread) on which the baseline is timed first (default 40)")
    ap.add_argument("--baseline-budget", type=float, default=150.0,
                    help="seconds allowed per case and variant for the remaining baseline points; beyond it the "
                         "full time is extrapolated from the subset (default 150)")
    ap.add_argument("--variants", default="published,matched,matched_jac",
                    help="baseline variants to run (default published,matched,matched_jac)")
    ap.add_argument("--jac-full", action="store_true", help="run matched_jac on all points, not just the subset")
    ap.add_argument("--ref-eta-rel", type=float, default=1e-13,
                    help="eta_min of the reference, relative to |lambda| + s_t^2 (default 1e-13)")
    ap.add_argument("--target-ratio", type=float, default=100.0, help="speed-ratio target (default 100)")
    ap.add_argument("--target-time", type=float, default=1.0, help="solve() time target in s (default 1)")
    ap.add_argument("--target-points", type=int, default=2000, help="density points target (default 2000)")
    ap.add_argument("--mode", default="grid", choices=("grid", "points", "both"),
                    help="grid (default): solve(n_points) against the per-point method on the SAME points, the "
                         "grid solve() returns; points: the older comparison of stieltjes on --points points "
                         "inside the support; both")
    ap.add_argument("--grid-cases", default="fig4,mp", help="cases of the grid comparison (default fig4,mp)")
    ap.add_argument("--grid-variants", default="matched",
                    help="baseline variants run on the whole grid (default matched: rfdm's eta, the equal-accuracy "
                         "comparison)")
    ap.add_argument("--grid-subset", type=int, default=0,
                    help="grid comparison: run the baseline on this many evenly spread grid points and extrapolate "
                         "its time (0, the default: all points, measured)")
    ap.add_argument("--quick", action="store_true", help="Fig. 4 case, 40 points, baseline on 8, seconds")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_spectrum.json)")
    args = ap.parse_args(argv)
    if args.quick:
        args.cases = "fig4"
        args.grid_subset = args.grid_subset or 20
        args.points = 40
        args.baseline_subset = 8
        args.baseline_budget = 0.0
        args.repeats = 3
        args.solve_repeats = 1
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    args.grid_cases = [c.strip() for c in args.grid_cases.split(",") if c.strip()]
    args.grid_variants = [v.strip() for v in args.grid_variants.split(",") if v.strip()]
    for v in args.grid_variants:
        if v not in ("published", "matched", "matched_jac"):
            ap.error(f"unknown grid variant {v!r}")
    for c in args.cases + args.grid_cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}; choose from {sorted(CASES)}")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in args.variants:
        if v not in ("published", "matched", "matched_jac"):
            ap.error(f"unknown variant {v!r}")
    if args.points < 1 or args.baseline_subset < 1 or args.baseline_steps < 2:
        ap.error("--points, --baseline-subset must be >= 1 and --baseline-steps >= 2")
    args.baseline_subset = min(args.baseline_subset, args.points)
    return args


# -- the baseline: per-point root finding with epsilon-continuation -----------------------------------------
class PerPointContinuation:
    """For one real lambda at a time: scipy.optimize.root(hybr) on (Re q, Im q, Re r, Im r) at
    z = lambda + i eps for a geometric ladder of eps, warm-started along the ladder."""

    def __init__(self, problem: sp.SpectralProblem, n_steps: int, eps_max_rel: float, eps_min_rel: float,
                 xtol: float | None = None, jacobian: bool = False):
        self.problem = problem
        self.ladder = np.geomspace(eps_max_rel, eps_min_rel, n_steps)
        self.xtol = xtol
        self.jacobian = jacobian
        self.mean_sigma = float(np.dot(problem.sigma_weights, problem.sigma_eigenvalues))

    def _residual(self, x, z):
        q, r = np.array([complex(x[0], x[1])]), np.array([complex(x[2], x[3])])
        F1, F2, *_ = self.problem._system(q, r, z)
        return np.array([F1[0].real, F1[0].imag, F2[0].real, F2[0].imag])

    def _residual_and_jacobian(self, x, z):
        q, r = np.array([complex(x[0], x[1])]), np.array([complex(x[2], x[3])])
        F1, F2, J11, J12, J21, J22 = self.problem._system(q, r, z)
        F = np.array([F1[0].real, F1[0].imag, F2[0].real, F2[0].imag])
        J = np.empty((4, 4))
        # F holomorphic in (q, r): d(Re F, Im F)/d(Re u, Im u) = [[Re J, -Im J], [Im J, Re J]]
        for i, row in enumerate(((J11, J12), (J21, J22))):
            for j, Jc in enumerate(row):
                a, b = Jc[0].real, Jc[0].imag
                J[2 * i:2 * i + 2, 2 * j:2 * j + 2] = [[a, -b], [b, a]]
        return F, J

    def solve_point(self, lam: float):
        scale = abs(lam) + self.problem.coeffs.s2
        eps = scale * self.ladder
        z = lam + 1j * eps[0]
        q0 = -1.0 / z
        r0 = self.mean_sigma * q0
        x = np.array([q0.real, q0.imag, r0.real, r0.imag])
        opts = {} if self.xtol is None else {"xtol": self.xtol}
        n_fail, nfev, statuses = 0, 0, {}
        for e in eps:
            zz = lam + 1j * e
            if self.jacobian:
                sol = root(self._residual_and_jacobian, x, args=(zz,), jac=True, method="hybr", options=opts)
            else:
                sol = root(self._residual, x, args=(zz,), method="hybr", options=opts)
            n_fail += not sol.success
            nfev += sol.nfev
            statuses[int(sol.status)] = statuses.get(int(sol.status), 0) + 1
            if np.all(np.isfinite(sol.x)):
                x = sol.x
        return complex(x[0], x[1]), {"n_not_success": n_fail, "nfev": nfev, "statuses": statuses}


def baseline_variants(problem, args):
    out = {}
    if "published" in args.variants:
        out["published"] = {"solver": PerPointContinuation(problem, args.baseline_steps, 1.0, args.baseline_eps_min),
                            "settings": {"eps_max_rel": 1.0, "eps_min_rel": args.baseline_eps_min,
                                         "xtol": "scipy default (1.49e-8)", "jacobian": "finite differences"}}
    if "matched" in args.variants:
        out["matched"] = {"solver": PerPointContinuation(problem, args.baseline_steps, 1.0, sp.ETA_REL, xtol=1e-12),
                          "settings": {"eps_max_rel": 1.0, "eps_min_rel": sp.ETA_REL, "xtol": 1e-12,
                                       "jacobian": "finite differences"}}
    if "matched_jac" in args.variants:
        out["matched_jac"] = {"solver": PerPointContinuation(problem, args.baseline_steps, 1.0, sp.ETA_REL,
                                                             xtol=1e-12, jacobian=True),
                              "settings": {"eps_max_rel": 1.0, "eps_min_rel": sp.ETA_REL, "xtol": 1e-12,
                                           "jacobian": "analytic (from _system)"},
                              "subset_only": not args.jac_full}
    for v in out.values():
        v["settings"].update({"n_steps": args.baseline_steps, "method": "scipy.optimize.root hybr",
                              "eps_scale": "|lambda| + s_t^2",
                              "start": "q = -1/z, r = mean(Sigma eigenvalues) q at the largest eps"})
    return out


# -- helpers ------------------------------------------------------------------------------------------------
def support_points(bulks, n):
    """n points inside the support: split as evenly as possible over the bulks, at the midpoints of equal
    cells of each bulk (so the outermost are half a cell from the edges)."""
    nb = len(bulks)
    counts = [n // nb + (k < n % nb) for k in range(nb)]
    lams, which = [], []
    for k, (b, m) in enumerate(zip(bulks, counts)):
        lams.append(b["left"] + (b["right"] - b["left"]) * (np.arange(m) + 0.5) / m)
        which.append(np.full(m, k))
    return np.concatenate(lams), np.concatenate(which), counts


def accuracy(q, q_ref, lams):
    rho, rho_ref = np.asarray(q).imag / math.pi, np.asarray(q_ref).imag / math.pi
    with np.errstate(all="ignore"):
        err = np.abs(rho - rho_ref) / rho_ref
    err = np.where(np.isfinite(err), err, np.inf)
    i = int(np.argmax(err))
    negative = rho < 0
    real_branch = (rho < REAL_BRANCH_FRACTION * rho_ref) & ~negative
    far = (err > WRONG_BRANCH_RTOL) & ~negative & ~real_branch
    return {"max_rel_density_error": float(err.max()), "median_rel_density_error": float(np.median(err)),
            "p99_rel_density_error": float(np.quantile(err, 0.99)), "argmax_lambda": float(lams[i]),
            "wrong_branch_points": int(np.sum(negative | real_branch | far)),
            "negative_imag_points": int(np.sum(negative)), "real_branch_points": int(np.sum(real_branch)),
            "other_wrong_solution_points": int(np.sum(far)),
            "wrong_branch_lambdas": [float(x) for x in lams[negative | real_branch | far][:20]]}


def timed(fn, repeats):
    recs, out = [], None
    for _ in range(repeats):
        with Timer() as tm:
            out = fn()
        recs.append(tm.record())
    walls = [r["wall_s"] for r in recs]
    return out, {"runs": recs, "median_wall_s": float(np.median(walls)), "min_wall_s": float(min(walls)),
                 "median_cpu_s": float(np.median([r["cpu_s"] for r in recs]))}


def run_baseline(name, var, lams, q_ref, args):
    solver = var["solver"]
    n = lams.size
    step = max(1, n // args.baseline_subset)
    subset = np.arange(0, n, step)[:args.baseline_subset]
    q = np.full(n, np.nan + 0j)
    infos = [None] * n
    solver.solve_point(float(lams[0]))  # warm-up (imports, caches), untimed
    with Timer() as ts:
        for i in subset:
            q[i], infos[i] = solver.solve_point(float(lams[i]))
    per_point = ts.wall / subset.size
    rest = np.setdiff1d(np.arange(n), subset)
    est_rest = per_point * rest.size
    ran_rest, rest_rec = False, None
    if rest.size and not var.get("subset_only") and est_rest <= args.baseline_budget:
        with Timer() as tr:
            for i in rest:
                q[i], infos[i] = solver.solve_point(float(lams[i]))
        ran_rest, rest_rec = True, tr.record()
    measured_all = ran_rest or rest.size == 0
    done = np.arange(n) if measured_all else subset
    total = ts.wall + (rest_rec["wall_s"] if ran_rest else 0.0)
    time_all = total if measured_all else per_point * n
    why = None
    if not measured_all:
        why = ("subset only (--jac-full not given)" if var.get("subset_only") else
               f"the other {rest.size} points would take ~{est_rest:.0f} s > --baseline-budget {args.baseline_budget:g} s")
    statuses = {}
    for i in done:
        for k, v in infos[i]["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    cpu_total = ts.cpu + (rest_rec["cpu_s"] if ran_rest else 0.0)
    cpu_all = cpu_total if measured_all else ts.cpu / subset.size * n
    rec = {"settings": var["settings"], "points_run": int(done.size), "subset_points": int(subset.size),
           "subset_timing": ts.record(), "subset_time_per_point_s": per_point,
           "rest_timing": rest_rec, "measured_on_all_points": measured_all, "extrapolation_reason": why,
           "time_all_points_s": time_all,
           "time_all_points_provenance": "measured" if measured_all else "extrapolated linearly from the subset",
           "time_per_point_s": time_all / n, "cpu_time_all_points_s": cpu_all,
           "mean_nfev_per_point": float(np.mean([infos[i]["nfev"] for i in done])),
           "points_with_hybr_not_success": int(sum(infos[i]["n_not_success"] > 0 for i in done)),
           "hybr_status_counts": statuses,
           "accuracy_vs_reference": accuracy(q[done], q_ref[done], lams[done]),
           "accuracy_points": "all" if measured_all else "subset"}
    return rec, q, done


def run_case(key, args):
    case = CASES[key]
    coeffs, problem = make_problem(key)
    print(f"\n=== case {key}: {case['description']}  (s_t^2 = {coeffs.s2:.4g}, v_t^2 = {coeffs.v2:.4g}, "
          f"load {loadavg()}) ===")

    # -- full density: solve() end to end ------------------------------------------------------------
    warnings = []
    with Timer() as t_first:
        result = problem.solve(n_points=args.n_points)
    _, solve_t = timed(lambda: problem.solve(n_points=args.n_points), args.solve_repeats)
    contention("solve()", solve_t["runs"], warnings)
    nb = len(result.bulks)
    n_returned = int(len(result.grid))
    full = {"n_points_requested": args.n_points, "n_points_returned": n_returned,
            "first_call": t_first.record(), "repeats": solve_t,
            "time_s": solve_t["median_wall_s"], "time_definition": "median of the repeats (first call separate)",
            "checks": result.checks, "converged": result.converged,
            "actual_min_density": float(result.density.min()) if n_returned else None,
            "atoms": result.atoms, "bulks": result.bulks, "bulk_sizes": result.bulk_sizes}
    print(f"solve(n_points={args.n_points}): {n_returned} points, {nb} bulks, first call {t_first.wall:.3f} s, "
          f"median of {args.solve_repeats} repeats {solve_t['median_wall_s']:.3f} s "
          f"(min {solve_t['min_wall_s']:.3f} s), checks converged: {result.converged}")
    if n_returned < args.target_points and nb:
        n_req = nb * math.ceil(args.target_points / nb)
        res2, t2 = timed(lambda: problem.solve(n_points=n_req), args.solve_repeats)
        full["rounded_up"] = {"n_points_requested": n_req, "n_points_returned": int(len(res2.grid)),
                              "repeats": t2, "time_s": t2["median_wall_s"], "converged": res2.converged,
                              "checks": res2.checks}
        print(f"  solve(n_points=2000) returned {n_returned} < {args.target_points} points ({nb} bulks x "
              f"{result.bulk_sizes}); solve(n_points={n_req}): {len(res2.grid)} points, median "
              f"{t2['median_wall_s']:.3f} s")

    # -- the points ------------------------------------------------------------------------------------
    lams, which, counts = support_points(result.bulks, args.points)

    # -- reference -------------------------------------------------------------------------------------
    scale = np.abs(lams) + coeffs.s2
    q_ref, _, conv_ref, _ = problem.stieltjes(lams, eta_min=args.ref_eta_rel * scale)
    q_ref10, _, _, _ = problem.stieltjes(lams, eta_min=10 * args.ref_eta_rel * scale)
    ref = {"method": "rfdm SpectralProblem.stieltjes", "eta_min_rel": args.ref_eta_rel,
           "all_converged": bool(conv_ref.all()), "min_density": float(q_ref.imag.min() / math.pi),
           "eta_error_estimate_max_rel": accuracy(q_ref10, q_ref, lams)["max_rel_density_error"] / 10,
           "eta_error_estimate_definition": "max rel. density difference between eta and 10 eta, / 10"}

    # -- rfdm: vectorised continuation ----------------------------------------------------------------
    with Timer() as t_rf_first:
        q_rf, res_rf, conv_rf, _ = problem.stieltjes(lams)
    _, rf_t = timed(lambda: problem.stieltjes(lams), args.repeats)
    contention("rfdm stieltjes", rf_t["runs"], warnings)
    rf_time = rf_t["median_wall_s"]
    rf = {"first_call": t_rf_first.record(), "repeats": rf_t, "time_s": rf_time,
          "time_definition": f"median of {args.repeats} repeats", "eta_min_rel": sp.ETA_REL,
          "all_converged": bool(conv_rf.all()), "max_residual": float(res_rf.max()),
          "accuracy_vs_reference": accuracy(q_rf, q_ref, lams)}
    print(f"rfdm stieltjes on {lams.size} points: median {rf_time * 1e3:.1f} ms (min {rf_t['min_wall_s'] * 1e3:.1f} ms, "
          f"first {t_rf_first.wall * 1e3:.1f} ms), max rel. density error "
          f"{rf['accuracy_vs_reference']['max_rel_density_error']:.2e}")

    # -- baselines -------------------------------------------------------------------------------------
    base = {}
    for name, var in baseline_variants(problem, args).items():
        rec, q_b, done = run_baseline(name, var, lams, q_ref, args)
        contention(f"baseline {name}", [r for r in (rec["subset_timing"], rec["rest_timing"]) if r], warnings)
        # consistency with rfdm at the same eta (independent solver, same equations)
        if var["settings"]["eps_min_rel"] == sp.ETA_REL:
            d = np.abs(q_b[done] - q_rf[done]) / np.abs(q_rf[done])
            rec["max_rel_diff_q_vs_rfdm_same_eta"] = float(d.max())
        rec["ratio_vs_rfdm"] = rec["time_all_points_s"] / rf_time
        rec["ratio_vs_rfdm_cpu_time"] = rec["cpu_time_all_points_s"] / rf_t["median_cpu_s"]
        base[name] = rec
        acc = rec["accuracy_vs_reference"]
        print(f"baseline {name}: {rec['time_per_point_s'] * 1e3:.1f} ms/point, {lams.size} points "
              f"{rec['time_all_points_s']:.1f} s ({rec['time_all_points_provenance']}), ratio "
              f"{rec['ratio_vs_rfdm']:.0f}x (CPU-time ratio {rec['ratio_vs_rfdm_cpu_time']:.0f}x), max rel. density error {acc['max_rel_density_error']:.2e} on "
              f"{rec['points_run']} points, wrong branch {acc['wrong_branch_points']}")

    # -- tables ----------------------------------------------------------------------------------------
    rows = [["rfdm (vectorised eta-continuation)", "measured", rf_time, rf_time / lams.size, "-",
             rf["accuracy_vs_reference"]["max_rel_density_error"], rf["accuracy_vs_reference"]["median_rel_density_error"],
             lams.size, rf["accuracy_vs_reference"]["wrong_branch_points"]]]
    for name, rec in base.items():
        acc = rec["accuracy_vs_reference"]
        rows.append([f"per-point hybr, {name}", rec["time_all_points_provenance"].split()[0],
                     rec["time_all_points_s"], rec["time_per_point_s"], rec["ratio_vs_rfdm"],
                     acc["max_rel_density_error"], acc["median_rel_density_error"], rec["points_run"],
                     acc["wrong_branch_points"]])
    print_table(f"{lams.size} points inside the support ({' + '.join(map(str, counts))} over {nb} bulks); "
                f"errors vs reference (rfdm, eta_min = {args.ref_eta_rel:g} rel., own eta error "
                f"~{ref['eta_error_estimate_max_rel']:.1e})",
                ["method", "time", "time [s]", "s/point", "ratio", "max rel err", "median rel err",
                 "err pts", "wrong br."], rows)

    same_acc = base.get("matched")
    ratio_same = same_acc["ratio_vs_rfdm"] if same_acc else None
    ratio_pub = base["published"]["ratio_vs_rfdm"] if "published" in base else None
    ratios = [r["ratio_vs_rfdm"] for r in base.values()]
    # solve() (bulks, edges, atom, masses and the density on n_returned points) against the baseline's density
    # on its len(lams) points only (conservative: the baseline finds no edges and fewer points) and against
    # the baseline's per-point cost times n_returned (the same number of density points); wall and CPU time
    solve_ratios = {}
    for name, rec in base.items():
        solve_ratios[name] = {
            "baseline_points_over_solve_wall": rec["time_all_points_s"] / full["time_s"],
            "baseline_points_over_solve_cpu": rec["cpu_time_all_points_s"] / solve_t["median_cpu_s"],
            "same_points_over_solve_wall": rec["time_per_point_s"] * n_returned / full["time_s"],
            "same_points_over_solve_cpu": rec["cpu_time_all_points_s"] / lams.size * n_returned / solve_t["median_cpu_s"]}
    solve_same = solve_ratios.get("matched")
    full_time = full["time_s"] if n_returned >= args.target_points else full.get("rounded_up", {}).get("time_s")
    targets = {
        "ratio_same_accuracy_ge_target": None if ratio_same is None else ratio_same >= args.target_ratio,
        "ratio_published_settings_ge_target": None if ratio_pub is None else ratio_pub >= args.target_ratio,
        "ratio_min_over_variants_ge_target": bool(min(ratios) >= args.target_ratio) if ratios else None,
        "rfdm_at_least_as_accurate_as_published": (None if "published" not in base else
                                                   rf["accuracy_vs_reference"]["max_rel_density_error"]
                                                   <= base["published"]["accuracy_vs_reference"]["max_rel_density_error"]),
        "solve_points_ge_target": n_returned >= args.target_points,
        "solve_time_le_target": full["time_s"] <= args.target_time,
        "solve_ge_target_points_time_le_target": None if full_time is None else full_time <= args.target_time,
        "solve_checks_converged": bool(result.converged),
    }
    if solve_same:
        targets["solve_ratio_same_accuracy_ge_target_wall"] = solve_same["baseline_points_over_solve_wall"] >= args.target_ratio
        targets["solve_ratio_same_accuracy_ge_target_cpu"] = solve_same["baseline_points_over_solve_cpu"] >= args.target_ratio
    summary = [["ratio, same accuracy (matched) [x]", ratio_same, f">= {args.target_ratio:g}",
                targets["ratio_same_accuracy_ge_target"]],
               [f"solve({args.n_points}) vs matched baseline on {lams.size} pts, wall [x]",
                solve_same and solve_same["baseline_points_over_solve_wall"], f">= {args.target_ratio:g}",
                targets.get("solve_ratio_same_accuracy_ge_target_wall")],
               [f"solve({args.n_points}) vs matched baseline on {lams.size} pts, CPU [x]",
                solve_same and solve_same["baseline_points_over_solve_cpu"], f">= {args.target_ratio:g}",
                targets.get("solve_ratio_same_accuracy_ge_target_cpu")],
               [f"solve({args.n_points}) vs matched baseline on {n_returned} pts, wall / CPU [x]",
                solve_same and f"{solve_same['same_points_over_solve_wall']:.0f} / {solve_same['same_points_over_solve_cpu']:.0f}",
                "", ""],
               ["ratio, published settings [x]", ratio_pub, f">= {args.target_ratio:g}",
                targets["ratio_published_settings_ge_target"]],
               ["ratio, smallest over variants [x]", min(ratios) if ratios else None, f">= {args.target_ratio:g}",
                targets["ratio_min_over_variants_ge_target"]],
               [f"solve(n_points={args.n_points}) points returned", n_returned, f">= {args.target_points}",
                targets["solve_points_ge_target"]],
               [f"solve(n_points={args.n_points}) time [s] (median)", full["time_s"], f"<= {args.target_time:g}",
                targets["solve_time_le_target"]],
               [f"solve(n_points={args.n_points}) CPU time [s] (median)", solve_t["median_cpu_s"], "", ""],
               [f"solve with >= {args.target_points} points, time [s]", full_time, f"<= {args.target_time:g}",
                targets["solve_ge_target_points_time_le_target"]],
               ["solve() run-time checks converged", result.converged, "yes", targets["solve_checks_converged"]]]
    print_table(f"Targets, case {key}", ["quantity", "value", "target", "met"], summary)
    ck = result.checks
    print(f"solve() checks: total mass {ck['total_mass']:.12f}, max residual {ck['max_residual']:.1e}, "
          f"all points converged {ck['all_points_converged']}, min density (as reported) {ck['min_density']:g} "
          f"(actual min {full['actual_min_density']:.3g}), max density below 0 {ck['max_density_below_zero']:.1e}, "
          f"atom {[round(a['weight'], 6) for a in result.atoms]}")
    for w in warnings:
        print("WARNING:", w)

    return {"case": {**case, "key": key}, "coefficients": {k: getattr(coeffs, k) for k in
                                                         ("t", "sigma_x2", "a", "b", "v2", "s2", "mu0", "mu1", "norm2")},
            "full_density": full,
            "points": {"n": int(lams.size), "per_bulk": counts, "rule": "midpoints of equal cells of each bulk",
                       "min": float(lams.min()), "max": float(lams.max())},
            "reference": ref, "rfdm": rf, "baselines": base,
            "solve_ratios": {**solve_ratios, "definition": "baseline_points: baseline time on the benchmark's points "
                             "(measured or extrapolated) / solve(n_points) median time; same_points: baseline "
                             "per-point time x the points solve() returns / solve() time; wall and CPU time"},
            "ratios": {"same_accuracy_matched": ratio_same, "published_settings": ratio_pub,
                       "all": {k: v["ratio_vs_rfdm"] for k, v in base.items()},
                       "all_cpu_time": {k: v["ratio_vs_rfdm_cpu_time"] for k, v in base.items()},
                       "definition": "baseline time on all points (measured or extrapolated) / rfdm median time "
                                     "(wall clock; the CPU-time ratio is less sensitive to other jobs)"},
            "targets_met": targets, "contention_warnings": warnings}


def run_grid_case(key, args):
    """solve(n_points) against the per-point method on the same points: the grid solve() returns (Chebyshev
    nodes of every bulk).  Both single-threaded; CPU and wall time of each; the density of each against the
    other, against rfdm's stieltjes at a 100x smaller eta and (case mp) against the Marchenko-Pastur closed
    form; the total mass of each (atoms + bulk quadrature with solve()'s weights)."""
    case = CASES[key]
    coeffs, problem = make_problem(key)
    print(f"\n=== grid comparison, case {key}: {case['description']} (s_t^2 = {coeffs.s2:.4g}, "
          f"v_t^2 = {coeffs.v2:.4g}, load {loadavg()}) ===")
    warnings = []
    with Timer() as t_first:
        result = problem.solve(n_points=args.n_points)
    _, solve_t = timed(lambda: problem.solve(n_points=args.n_points), args.solve_repeats)
    contention("solve()", solve_t["runs"], warnings)
    grid, rho_solve = result.grid, result.density
    npts = int(grid.size)
    atom_mass = sum(a["weight"] for a in result.atoms)
    # solve()'s quadrature weights are rho_i x (Chebyshev weight_i): the same rule applied to another density
    cheb = np.where(rho_solve > 0, result.weights / np.where(rho_solve > 0, rho_solve, 1.0), 0.0)
    print(f"solve(n_points={args.n_points}): {npts} points in {len(result.bulks)} bulks {result.bulk_sizes}; "
          f"median CPU {solve_t['median_cpu_s']:.3f} s, wall {solve_t['median_wall_s']:.3f} s "
          f"(first call {t_first.wall:.3f} s); total mass {result.checks['total_mass']:.12f}; "
          f"checks converged {result.converged}")

    scale = np.abs(grid) + coeffs.s2
    q_ref, _, conv_ref, _ = problem.stieltjes(grid, eta_min=args.ref_eta_rel * scale)
    rho_ref = q_ref.imag / math.pi
    indep = None
    if case.get("zero_a"):
        rho_mp, (lo, hi) = marchenko_pastur(grid, coeffs, case["psi_p"], case["psi_n"])
        c = case["psi_p"] / case["psi_n"]
        indep = {"name": "Marchenko-Pastur closed form", "density": rho_mp, "support": [lo, hi],
                 "atom": max(0.0, 1 - 1 / c),
                 "solve_edges": [[b["left"], b["right"]] for b in result.bulks],
                 "solve_atoms": result.atoms}

    def rel(a, b):
        with np.errstate(all="ignore"):
            e = np.abs(a - b) / np.abs(b)
        return float(np.max(np.where(np.isfinite(e), e, np.inf)))

    out = {"case": {**{k: v for k, v in case.items()}, "key": key},
           "coefficients": {k: getattr(coeffs, k) for k in ("t", "sigma_x2", "a", "b", "v2", "s2", "mu0", "mu1", "norm2")},
           "points": {"n": npts, "rule": "the grid solve(n_points) returns (Chebyshev nodes of each bulk)",
                      "per_bulk": result.bulk_sizes, "min": float(grid.min()), "max": float(grid.max())},
           "solve": {"n_points_requested": args.n_points, "first_call": t_first.record(), "repeats": solve_t,
                     "checks": result.checks, "converged": result.converged, "bulks": result.bulks,
                     "atoms": result.atoms,
                     "max_rel_density_diff_vs_reference": rel(rho_solve, rho_ref),
                     "total_mass": result.checks["total_mass"]},
           "reference": {"method": "rfdm SpectralProblem.stieltjes on the same points", "eta_min_rel": args.ref_eta_rel,
                         "all_converged": bool(conv_ref.all())},
           "baselines": {}, "contention_warnings": warnings}
    if indep is not None:
        out["solve"]["max_rel_density_diff_vs_mp"] = rel(rho_solve, indep["density"])
        out["independent_check"] = {k: v for k, v in indep.items() if k != "density"}
        print(f"Marchenko-Pastur: support [{indep['support'][0]:.6g}, {indep['support'][1]:.6g}], atom "
              f"{indep['atom']:.6g}; solve(): bulks {indep['solve_edges']}, atoms "
              f"{[(a['position'], a['weight']) for a in result.atoms]}")
    rows = [["rfdm solve() (edges, atom, masses, density)", "measured", solve_t["median_cpu_s"], solve_t["median_wall_s"],
             "-", "-", rel(rho_solve, rho_ref), out["solve"].get("max_rel_density_diff_vs_mp"),
             result.checks["total_mass"]]]
    variants = baseline_variants(problem, argparse.Namespace(**{**vars(args), "variants": args.grid_variants}))
    for name, var in variants.items():
        solver = var["solver"]
        n_run = npts if not args.grid_subset else min(args.grid_subset, npts)
        idx = np.unique(np.linspace(0, npts - 1, n_run).round().astype(int))
        solver.solve_point(float(grid[0]))  # warm-up, untimed
        q_b = np.full(npts, np.nan + 0j)
        n_fail = 0
        with Timer() as tb:
            for i in idx:
                q_b[i], info = solver.solve_point(float(grid[i]))
                n_fail += info["n_not_success"] > 0
        measured_all = idx.size == npts
        cpu_all = tb.cpu / idx.size * npts
        wall_all = tb.wall / idx.size * npts
        contention(f"baseline {name} on the grid", [tb.record()], warnings)
        rho_b = q_b.imag / math.pi
        done = idx
        rec = {"settings": var["settings"], "points_run": int(idx.size), "timing": tb.record(),
               "measured_on_all_points": measured_all,
               "time_provenance": "measured" if measured_all else f"extrapolated linearly from {idx.size} points",
               "cpu_time_all_points_s": cpu_all, "wall_time_all_points_s": wall_all,
               "cpu_time_per_point_s": tb.cpu / idx.size,
               "points_with_hybr_not_success": int(n_fail),
               "max_rel_density_diff_vs_solve": rel(rho_b[done], rho_solve[done]),
               "max_rel_density_diff_vs_reference": rel(rho_b[done], rho_ref[done]),
               "wrong_branch": accuracy(q_b[done], q_ref[done], grid[done])["wrong_branch_points"],
               "ratio_cpu": cpu_all / solve_t["median_cpu_s"], "ratio_wall": wall_all / solve_t["median_wall_s"]}
        if measured_all:
            rec["total_mass_with_solve_weights"] = float(atom_mass + np.sum(cheb * rho_b))
        if indep is not None:
            rec["max_rel_density_diff_vs_mp"] = rel(rho_b[done], indep["density"][done])
        out["baselines"][name] = rec
        rows.append([f"per-point hybr, {name} ({idx.size} of {npts} points)", rec["time_provenance"].split()[0],
                     cpu_all, wall_all, rec["ratio_cpu"], rec["ratio_wall"], rec["max_rel_density_diff_vs_reference"],
                     rec.get("max_rel_density_diff_vs_mp"), rec.get("total_mass_with_solve_weights")])
        print(f"baseline {name}: {idx.size} points, CPU {tb.cpu:.1f} s ({tb.cpu / idx.size * 1e3:.1f} ms/point), "
              f"wall {tb.wall:.1f} s; density vs solve() max rel. diff {rec['max_rel_density_diff_vs_solve']:.2e}; "
              f"CPU-time ratio {rec['ratio_cpu']:.0f}x, wall ratio {rec['ratio_wall']:.0f}x")
    print_table(f"Case {key}: the same {npts} points for both methods (one BLAS thread each; CPU time = "
                "time.process_time, the meaningful number on a shared machine; wall time depends on the load)",
                ["method", "time", "CPU [s]", "wall [s]", "ratio CPU", "ratio wall", "max rel err vs ref",
                 "max rel err vs MP", "total mass"], rows)
    m = out["baselines"].get("matched")
    out["targets_met"] = {
        "ratio_cpu_ge_target": None if m is None else m["ratio_cpu"] >= args.target_ratio,
        "ratio_wall_ge_target": None if m is None else m["ratio_wall"] >= args.target_ratio,
        "equal_accuracy": None if m is None else bool(m["max_rel_density_diff_vs_solve"] <= 1e-6),
        "solve_points_ge_target": npts >= args.target_points,
        "solve_checks_converged": bool(result.converged)}
    for w in warnings:
        print("WARNING:", w)
    return out


def main(argv=None):
    args = parse_args(argv)
    machine = machine_info()
    t0 = time.perf_counter()
    print(f"rfdm {rfdm.__version__}: spectrum of U, vectorised eta-continuation vs per-point hybr with "
          f"eps-continuation; load {machine['loadavg_at_start']} on {machine['cpu_count']} CPUs")
    print("One BLAS thread for both methods (OMP/OPENBLAS/MKL_NUM_THREADS = "
          f"{os.environ.get('OMP_NUM_THREADS')}/{os.environ.get('OPENBLAS_NUM_THREADS')}/"
          f"{os.environ.get('MKL_NUM_THREADS')}). The machine may be loaded by other jobs: CPU-time ratios "
          "(time.process_time) are the meaningful ones; wall-time ratios are printed too.")
    grid_cases = {key: run_grid_case(key, args) for key in args.grid_cases} if args.mode in ("grid", "both") else {}
    cases = {key: run_case(key, args) for key in args.cases} if args.mode in ("points", "both") else {}
    config = {"cases": args.cases, "points": args.points, "n_points": args.n_points, "repeats": args.repeats,
              "solve_repeats": args.solve_repeats, "baseline_steps": args.baseline_steps,
              "baseline_eps_min_published": args.baseline_eps_min, "baseline_subset": args.baseline_subset,
              "baseline_budget_s": args.baseline_budget, "variants": args.variants, "jac_full": args.jac_full,
              "ref_eta_rel": args.ref_eta_rel, "rfdm_eta_rel": sp.ETA_REL, "rfdm_eta_steps": sp.ETA_STEPS,
              "wrong_branch_rules": {"negative_imag": "Im q < 0",
                                     "real_branch": f"density < {REAL_BRANCH_FRACTION:g} x reference",
                                     "other": f"relative density error > {WRONG_BRANCH_RTOL:g}"},
              "quick": args.quick, "mode": args.mode, "grid_cases": args.grid_cases,
              "grid_variants": args.grid_variants, "grid_subset": args.grid_subset,
              "blas_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                              "MKL_NUM_THREADS")}}
    primary = "fig4" if "fig4" in cases else (args.cases[0] if cases else None)
    grid_primary = "fig4" if "fig4" in grid_cases else (next(iter(grid_cases)) if grid_cases else None)
    payload = {"benchmark": NAME, "config": config, "machine": machine,
               "loadavg_at_end": loadavg(), "total_wall_s": time.perf_counter() - t0,
               "grid_comparison": {"primary_case": grid_primary, "cases": grid_cases,
                                   "definition": "solve(n_points) and the per-point baseline on the same points "
                                                 "(solve's grid); ratio = baseline time on all of them / median "
                                                 "solve() time, CPU (time.process_time, one BLAS thread) and wall",
                                   "met_primary_case": grid_cases[grid_primary]["targets_met"] if grid_primary else None},
               "primary_case": primary, "cases": cases,
               "targets": {"ratio": args.target_ratio, "solve_time_s": args.target_time,
                           "solve_points": args.target_points,
                           "met_primary_case": cases[primary]["targets_met"] if primary else None},
               "provenance": {"measured": ["rfdm stieltjes times", "solve() times", "baseline subset times",
                                           "baseline full times where measured_on_all_points", "all accuracies"],
                              "extrapolated": ["baseline time_all_points_s where measured_on_all_points is false",
                                               "grid baseline times where measured_on_all_points is false"]}}
    path = write_json(NAME + ("_quick" if args.quick else ""), payload, args.out)
    print(f"\nload at end {payload['loadavg_at_end']}; total {payload['total_wall_s']:.0f} s\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
    sys.exit(0)
