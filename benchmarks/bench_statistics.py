"""Benchmark: exact noise-averaged statistics U, V (Mehler series + Stein) against Monte Carlo.

Target (default size d = 100, p = 6400, n = 800, t = 0.01, tanh, Gaussian data N(0, I)):
  * rfdm.noise_averaged_statistics (default rtol) in <= 15 s;
  * >= 100x faster than Monte Carlo over the noise reaching the same accuracy, a relative Frobenius error
    of 1e-3 on U.

What is measured and what is extrapolated:
  * measured: the exact method's time, its truncation bound, its difference from a tighter run
    (rtol = 1e-13, also timed); Monte Carlo (rfdm.monte_carlo_statistics, m noise draws per point) for a
    ladder of m: time per draw and relative Frobenius errors of U and V against the tight exact result;
  * extrapolated: the MC error follows c/sqrt(m); c is fitted on the measured ladder, m* = (c/1e-3)^2 and
    the MC time to 1e-3 = m* x measured time per draw.  If that time fits in --mc-budget seconds, MC is run
    at m* for real and its measured error is reported as well.

Run:  python benchmarks/bench_statistics.py            (default size, ~2-3 minutes on 2 cores)
      python benchmarks/bench_statistics.py --quick    (tiny size d=20 p=200 n=40, target error 1e-2, seconds)
Writes benchmarks/results/bench_statistics.json (bench_statistics_quick.json with --quick; or --out).
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

import rfdm
from _common import Timer, contention_warning, machine_info, print_table, relative_frobenius, write_json

NAME = "bench_statistics"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=100, help="input dimension (default 100)")
    ap.add_argument("--p", type=int, default=6400, help="number of random features (default 6400)")
    ap.add_argument("--n", type=int, default=800, help="number of training points (default 800)")
    ap.add_argument("--t", type=float, default=0.01, help="diffusion time (default 0.01)")
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--rtol", type=float, default=None,
                    help="rtol of the timed exact run (default: the library default)")
    ap.add_argument("--tight-rtol", type=float, default=1e-13,
                    help="rtol of the reference exact run (default 1e-13); <= 0 skips it")
    ap.add_argument("--ladder", default="1,2,4,8,16", help="Monte Carlo draws per point, comma-separated")
    ap.add_argument("--target-error", type=float, default=None,
                    help="relative Frobenius error (default 1e-3; 1e-2 with --quick so that MC at m* runs for real)")
    ap.add_argument("--mc-budget", type=float, default=120.0,
                    help="seconds allowed for running Monte Carlo at m* for real (default 120)")
    ap.add_argument("--target-time", type=float, default=15.0, help="exact-method time target in s (default 15)")
    ap.add_argument("--target-ratio", type=float, default=100.0, help="speed-ratio target (default 100)")
    ap.add_argument("--exact-repeats", type=int, default=2,
                    help="timed runs of the exact method; the fastest is used (default 2)")
    ap.add_argument("--seed-w", type=int, default=1, help="seed of W")
    ap.add_argument("--seed-x", type=int, default=2, help="seed of the training set X")
    ap.add_argument("--seed-mc", type=int, default=1000, help="Monte Carlo seeds are SeedSequence([seed-mc, m])")
    ap.add_argument("--quick", action="store_true", help="tiny size (d=20, p=200, n=40), runs in seconds")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_statistics.json)")
    args = ap.parse_args(argv)
    if args.quick:
        args.d, args.p, args.n = 20, 200, 40
        args.ladder = "1,2,4,8"
        args.mc_budget = min(args.mc_budget, 10.0)
        if args.target_error is None:
            args.target_error = 1e-2
    if args.target_error is None:
        args.target_error = 1e-3
    args.ladder = sorted({int(m) for m in args.ladder.split(",") if m.strip()})
    if not args.ladder or min(args.ladder) < 1:
        ap.error("--ladder needs positive integers")
    return args


def fit_inverse_sqrt(ms, errs):
    """Fit err = c/sqrt(m) (least squares in log space with the slope fixed at -1/2) and, as a check of the
    law, the free power law err = c' m^b."""
    ms, errs = np.asarray(ms, float), np.asarray(errs, float)
    c = float(np.exp(np.mean(np.log(errs * np.sqrt(ms)))))
    resid = np.log(errs) - np.log(c / np.sqrt(ms))
    slope = float(np.polyfit(np.log(ms), np.log(errs), 1)[0]) if ms.size >= 2 else None
    return {"c": c, "free_slope": slope, "max_abs_log_residual": float(np.max(np.abs(resid)))}


def main(argv=None):
    args = parse_args(argv)
    d, p, n, t = args.d, args.p, args.n, args.t
    machine = machine_info()  # at the start: records the load before the run
    rtol_kw = {} if args.rtol is None else {"rtol": args.rtol}
    config = {"d": d, "p": p, "n": n, "t": t, "activation": args.activation, "data": "Gaussian N(0, I_d)",
              "psi_p": p / d, "psi_n": n / d, "rtol": args.rtol if args.rtol is not None else "library default",
              "tight_rtol": args.tight_rtol, "mc_ladder": args.ladder, "target_error": args.target_error,
              "mc_budget_s": args.mc_budget, "seeds": {"W": args.seed_w, "X": args.seed_x,
                                                        "monte_carlo": f"SeedSequence([{args.seed_mc}, m])"},
              "quick": args.quick}
    print(f"rfdm {rfdm.__version__}: exact vs Monte Carlo noise-averaged statistics, "
          f"d={d} p={p} n={n} t={t} {args.activation}")

    features = rfdm.RandomFeatures.sample(d, p, args.activation, rng=np.random.default_rng(args.seed_w))
    X = rfdm.GaussianData(d).sample(n, np.random.default_rng(args.seed_x))

    # -- exact method ---------------------------------------------------------------------------------
    exact_runs = []
    for _ in range(max(1, args.exact_repeats)):
        with Timer() as tm:
            exact = rfdm.noise_averaged_statistics(features, X, t, **rtol_kw)
        exact_runs.append(tm.record())
    tm = min(exact_runs, key=lambda r: r["wall_s"])
    exact_time = tm["wall_s"]
    info = exact.info
    exact_rec = {"timing": tm, "all_runs": exact_runs, "timing_used": "fastest run", "truncation_order": info["truncation_order"],
                 "orders_used": info["orders_used"], "quadrature_rule": info["quadrature_rule"],
                 "relative_truncation_bound": info["relative_truncation_bound"],
                 "truncation_bound": info["truncation_bound"], "rho_max": info["rho_max"],
                 "norm_U_fro": float(np.linalg.norm(exact.U)), "norm_V_fro": float(np.linalg.norm(exact.V))}
    walls = ", ".join(f"{r['wall_s']:.2f}" for r in exact_runs)
    print(f"exact (default rtol): {exact_time:.2f} s wall ({tm['cpu_s']:.1f} s CPU; fastest of {walls} s), order K = "
          f"{info['truncation_order']}, relative truncation bound {info['relative_truncation_bound']:.2e}")

    tight_rec, ref = None, exact
    if args.tight_rtol > 0:
        with Timer() as tt:
            tight = rfdm.noise_averaged_statistics(features, X, t, rtol=args.tight_rtol)
        tight_rec = {"timing": tt.record(), "rtol": args.tight_rtol,
                     "truncation_order": tight.info["truncation_order"],
                     "relative_truncation_bound": tight.info["relative_truncation_bound"],
                     "default_vs_tight_rel_fro_U": relative_frobenius(exact.U, tight.U),
                     "default_vs_tight_rel_fro_V": relative_frobenius(exact.V, tight.V)}
        ref = tight
        print(f"exact (rtol={args.tight_rtol:g}): {tt.wall:.2f} s, K = {tight.info['truncation_order']}; "
              f"default vs tight: rel. Frobenius diff U {tight_rec['default_vs_tight_rel_fro_U']:.2e}, "
              f"V {tight_rec['default_vs_tight_rel_fro_V']:.2e}")
    exact_rec["reference"] = "tight run" if tight_rec else "default run (no tight run)"

    # -- Monte Carlo ladder (measured) ------------------------------------------------------------------
    ladder = []
    for m in args.ladder:
        rng = np.random.default_rng(np.random.SeedSequence([args.seed_mc, m]))
        with Timer() as tmc:
            mc = rfdm.monte_carlo_statistics(features, X, t, m, rng)
        ladder.append({"m": m, "timing": tmc.record(), "time_per_draw_s": tmc.wall / m,
                       "rel_err_U": relative_frobenius(mc.U, ref.U), "rel_err_V": relative_frobenius(mc.V, ref.V)})
        print(f"  MC m={m:>4}: {tmc.wall:7.2f} s, rel err U {ladder[-1]['rel_err_U']:.3e}, "
              f"V {ladder[-1]['rel_err_V']:.3e}")
        del mc
    ms = [r["m"] for r in ladder]
    # fastest rung, as for the exact method (the pooled value is recorded too)
    time_per_draw = min(r["time_per_draw_s"] for r in ladder)
    time_per_draw_pooled = sum(r["timing"]["wall_s"] for r in ladder) / sum(ms)

    # -- extrapolation with the 1/sqrt(m) law ---------------------------------------------------------
    eps = args.target_error
    extrap = {}
    for key in ("U", "V"):
        fit = fit_inverse_sqrt(ms, [r[f"rel_err_{key}"] for r in ladder])
        m_star = max(1, math.ceil((fit["c"] / eps) ** 2))
        extrap[key] = {**fit, "m_star": m_star, "mc_time_to_target_s": m_star * time_per_draw,
                       "ratio_vs_exact": m_star * time_per_draw / exact_time}
    m_star = extrap["U"]["m_star"]
    mc_time_target = extrap["U"]["mc_time_to_target_s"]
    ratio = mc_time_target / exact_time

    # -- run MC at m* for real if affordable --------------------------------------------------------------
    real = {"ran": False, "reason": None}
    if mc_time_target <= args.mc_budget:
        rng = np.random.default_rng(np.random.SeedSequence([args.seed_mc, m_star]))
        with Timer() as tr:
            mc = rfdm.monte_carlo_statistics(features, X, t, m_star, rng)
        real = {"ran": True, "m": m_star, "timing": tr.record(), "rel_err_U": relative_frobenius(mc.U, ref.U),
                "rel_err_V": relative_frobenius(mc.V, ref.V), "measured_ratio_vs_exact": tr.wall / exact_time}
        print(f"  MC at m* = {m_star} run for real: {tr.wall:.2f} s, rel err U {real['rel_err_U']:.3e}")
    else:
        real["reason"] = (f"m* = {m_star} draws would take ~{mc_time_target:.0f} s > --mc-budget "
                          f"{args.mc_budget:g} s; time and error at m* are extrapolated")

    # -- tables ---------------------------------------------------------------------------------------
    print_table("Monte Carlo ladder (measured; errors against the tight exact result)",
                ["m", "time [s]", "s/draw", "rel err U", "err_U*sqrt(m)", "rel err V", "err_V*sqrt(m)"],
                [[r["m"], r["timing"]["wall_s"], r["time_per_draw_s"], r["rel_err_U"],
                  r["rel_err_U"] * math.sqrt(r["m"]), r["rel_err_V"], r["rel_err_V"] * math.sqrt(r["m"])]
                 for r in ladder])
    print_table(f"Extrapolation to relative error {eps:g} (fitted c/sqrt(m); EXTRAPOLATED unless run)",
                ["", "c (fit)", "free slope", "m*", "MC time [s]", "ratio MC/exact"],
                [[k, extrap[k]["c"], extrap[k]["free_slope"], extrap[k]["m_star"],
                  extrap[k]["mc_time_to_target_s"], extrap[k]["ratio_vs_exact"]] for k in ("U", "V")])
    if extrap["V"]["c"] > 3 * extrap["U"]["c"]:
        print(f"note: V's relative MC error is {extrap['V']['c'] / extrap['U']['c']:.0f}x U's at equal m: V = "
              f"E[phi xi^T] is small (O(sqrt(Delta_t/d)) entries, Delta_t = {float(rfdm.delta_t(t)):.3g}) "
              "while phi xi^T fluctuates at O(1), so at small t MC needs far more draws for V than for U.")

    ratio_final = real["measured_ratio_vs_exact"] if real["ran"] else ratio
    targets = {"exact_time_le_target": exact_time <= args.target_time,
               "ratio_ge_target": ratio_final >= args.target_ratio,
               "exact_accuracy_le_target_error": (tight_rec["default_vs_tight_rel_fro_U"] if tight_rec
                                                  else info["relative_truncation_bound"]) <= eps}
    rows = [["exact time [s] (measured)", exact_time, f"<= {args.target_time:g}", targets["exact_time_le_target"]],
            ["exact rel. truncation bound", info["relative_truncation_bound"], "", ""],
            ["exact vs tight rel. diff U (measured)",
             tight_rec["default_vs_tight_rel_fro_U"] if tight_rec else None, f"<= {eps:g}",
             targets["exact_accuracy_le_target_error"]],
            ["tight run time [s] (measured)", tight_rec["timing"]["wall_s"] if tight_rec else None, "", ""],
            ["MC time per draw [s] (measured, fastest rung)", time_per_draw, "", ""],
            [f"MC m* for U at {eps:g} (extrapolated)", m_star, "", ""],
            ["MC rel err U at m* (measured)", real["rel_err_U"] if real["ran"] else "not run", "", ""],
            ["MC time to target [s] " + ("(measured)" if real["ran"] else "(extrapolated)"),
             real["timing"]["wall_s"] if real["ran"] else mc_time_target, "", ""],
            ["ratio MC / exact " + ("(measured)" if real["ran"] else "(extrapolated)"),
             ratio_final, f">= {args.target_ratio:g}",
             targets["ratio_ge_target"]]]
    print_table("Summary", ["quantity", "value", "target", "met"], rows)

    warnings = [w for w in [contention_warning("exact method (fastest run)", tm, min_wall=1.0)]
                + [contention_warning(f"Monte Carlo m={r['m']}", r["timing"], min_wall=1.0)
                   for r in ladder] if w]
    for w in warnings:
        print("WARNING:", w)
    payload = {"benchmark": NAME, "contention_warnings": warnings, "config": config, "machine": machine, "exact": exact_rec,
               "exact_tight": tight_rec,
               "monte_carlo": {"measured_ladder": ladder, "time_per_draw_s": time_per_draw,
                               "time_per_draw_definition": "fastest rung of the ladder (wall / m)",
                               "time_per_draw_s_pooled": time_per_draw_pooled,
                               "extrapolated_from_inverse_sqrt_law": extrap, "run_at_m_star": real},
               "ratio": {"value": ratio_final,
                         "extrapolated_value": ratio, "measured": real["ran"],
                         "definition": "MC time to relative Frobenius error target on U / exact time"},
               "targets": {"exact_time_s": args.target_time, "ratio": args.target_ratio,
                           "target_error": eps, "met": targets},
               "provenance": {"measured": ["exact timings", "truncation bounds", "default-vs-tight differences",
                                           "MC ladder times and errors", "run_at_m_star (if ran)"],
                              "extrapolated": ["m_star", "mc_time_to_target_s", "ratio (unless run_at_m_star ran)"]}}
    path = write_json(NAME + ("_quick" if args.quick else ""), payload, args.out)
    print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
    sys.exit(0)
