"""Benchmark: learning curves in the limit d -> infinity (rfdm.asymptotics) against the exact finite-d route.

Target (default psi_p = 64, psi_n = 8, t = 0.1, tanh, data N(0, I)): the whole asymptotic train loss, test
loss, score error and generalization gap at 201 values of tau (200 log-spaced in [1e-1, 1e6] plus inf) in
<= 1 s on 2 cores, end to end (coefficients, Thm. 3.1 at every contour node for m and 2m nodes per panel,
the two-point matrices, the closed forms at tau = inf, the curves).  In the same run the conventional route:
exact noise-averaged statistics at d = --d (default 100: p = 6400, n = 800), population statistics,
GradientFlow, the same 201 values of tau.

Accuracy (measured): the asymptotic curves' node-doubling difference (m vs 2m nodes per panel) and the
agreement of the contour at tau = inf with the closed forms; the exact curves against the limit (max
difference and d x difference, the finite-size effect), and optionally (--bridge-dims) exact runs at smaller
d, the Richardson extrapolation in 1/d over all of them and its distance to the limit.

Run:  python benchmarks/bench_asymptotics.py            (default; the exact d = 100 route takes minutes)
      python benchmarks/bench_asymptotics.py --quick    (d = 20, psi_p = 8, psi_n = 2; seconds)
Writes benchmarks/results/bench_asymptotics.json (bench_asymptotics_quick.json with --quick; or --out).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import rfdm
from _common import Timer, contention_warning, machine_info, print_table, write_json
from rfdm.asymptotics import AsymptoticCurves, finite_d_curves, richardson_in_inverse_d

NAME = "bench_asymptotics"
KEYS = ("train_loss", "test_loss", "score_error", "generalization_gap")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=100, help="dimension of the exact finite-d route (default 100)")
    ap.add_argument("--psi-p", type=float, default=64.0)
    ap.add_argument("--psi-n", type=float, default=8.0)
    ap.add_argument("--t", type=float, default=0.1)
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--n-tau", type=int, default=200, help="finite tau values (plus inf; default 200)")
    ap.add_argument("--tau-min", type=float, default=1e-1)
    ap.add_argument("--tau-max", type=float, default=1e6)
    ap.add_argument("--nodes-per-panel", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of the asymptotic route (fastest counts)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the exact route (W: [seed, 0], X: [seed, 1])")
    ap.add_argument("--bridge-dims", default="", help="extra d for the Richardson bridge, e.g. 25,50")
    ap.add_argument("--skip-exact", action="store_true")
    ap.add_argument("--aniso-eigenvalues", default="0.2,3", help="also time the asymptotic route for a Sigma with "
                    "these eigenvalues (empty: skip; default 0.2,3)")
    ap.add_argument("--aniso-weights", default="0.75,0.25")
    ap.add_argument("--target-time", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true", help="d = 20, psi_p = 8, psi_n = 2 (seconds)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.d, args.psi_p, args.psi_n = 20, 8.0, 2.0
        args.bridge_dims = args.bridge_dims or "10"
    return args


def main(argv=None):
    args = parse_args(argv)
    tau = np.r_[np.logspace(math.log10(args.tau_min), math.log10(args.tau_max), args.n_tau), np.inf]
    setting = dict(activation=args.activation, t=args.t, psi_p=args.psi_p, psi_n=args.psi_n)
    report = {"config": {**vars(args), "n_tau_total": tau.size}, "machine": machine_info(), "rfdm": rfdm.__version__}
    warnings = []

    # -- asymptotic route, end to end ------------------------------------------------------------------
    times = []
    for _ in range(args.repeats):
        with Timer() as tm:
            ac = AsymptoticCurves(args.activation, args.t, args.psi_p, args.psi_n,
                                  nodes_per_panel=args.nodes_per_panel)
            cur = ac.curves(tau)
        times.append(tm.record())
    best = min(times, key=lambda r: r["wall_s"])
    w = contention_warning("asymptotic route", best)
    if w:
        warnings.append(w)
    at_inf = ac.contour_at_inf()[2 * args.nodes_per_panel]
    inf_check = {"train_loss": abs(at_inf["train_loss"] - ac.train_loss_inf()),
                 "test_loss": abs(at_inf["test_loss"] - ac.test_loss_inf())}
    report["asymptotic"] = {"timings": times, "best_wall_s": best["wall_s"], "cpu_s": best["cpu_s"],
                            "target_met": best["wall_s"] <= args.target_time,
                            "node_doubling_error": cur["accuracy"], "contour": cur["contour"],
                            "contour_vs_closed_form_at_inf": inf_check,
                            "curves": {k: cur[k] for k in ("tau",) + KEYS}}
    print_table(f"asymptotic route: {tau.size} values of tau, psi_p = {args.psi_p:g}, psi_n = {args.psi_n:g}, "
                f"t = {args.t:g}", ["quantity", "value"],
                [["wall (fastest of %d) [s]" % args.repeats, best["wall_s"]], ["cpu [s]", best["cpu_s"]],
                 ["target <= %g s" % args.target_time, best["wall_s"] <= args.target_time],
                 ["contour nodes (upper half, m / 2m)", "%d / %d" % tuple(cur["contour"]["nodes_upper_half"])],
                 *[[f"node-doubling error {k}", cur["accuracy"][k]] for k in KEYS],
                 *[[f"|contour - closed form| at inf, {k}", v] for k, v in inf_check.items()],
                 ["L_train(inf)", ac.train_loss_inf()], ["L_test(inf)", ac.test_loss_inf()]])

    # -- asymptotic route for an anisotropic Sigma (nested pencil; no exact counterpart here) ---------------
    if args.aniso_eigenvalues:
        ev = [float(x) for x in args.aniso_eigenvalues.split(",")]
        wt = [float(x) for x in args.aniso_weights.split(",")]
        with Timer() as tm:
            an = AsymptoticCurves(args.activation, args.t, args.psi_p, args.psi_n, sigma_eigenvalues=ev,
                                  sigma_weights=wt, nodes_per_panel=args.nodes_per_panel)
            acur = an.curves(tau)
        rec = tm.record()
        report["asymptotic_anisotropic"] = {"sigma_eigenvalues": ev, "sigma_weights": wt, "timing": rec,
                                            "node_doubling_error": acur["accuracy"],
                                            "curves": {k: acur[k] for k in ("tau",) + KEYS}}
        print_table(f"asymptotic route, Sigma eigenvalues {ev} weights {wt} (nested pencil)", ["quantity", "value"],
                    [["wall [s]", rec["wall_s"]], ["cpu [s]", rec["cpu_s"]],
                     *[[f"node-doubling error {k}", acur["accuracy"][k]] for k in KEYS],
                     ["L_train(inf)", an.train_loss_inf()], ["L_test(inf)", an.test_loss_inf()]])

    # -- exact finite-d route --------------------------------------------------------------------------
    if not args.skip_exact:
        dims = sorted({int(x) for x in args.bridge_dims.split(",") if x.strip()} | {args.d})
        exact = {}
        for d in dims:
            with Timer() as tm:
                fd = finite_d_curves(args.activation, args.t, args.psi_p, args.psi_n, d, tau, seeds=[args.seed])
            rec = tm.record()
            w = contention_warning(f"exact route d = {d}", rec)
            if w:
                warnings.append(w)
            diff = {k: fd[k] - cur[k] for k in KEYS}
            exact[d] = {"timing": rec, "p": fd["p"], "n": fd["n"],
                        "max_abs_difference_to_limit": {k: float(np.max(np.abs(v))) for k, v in diff.items()},
                        "d_times_difference_at_inf": {k: float(d * v[-1]) for k, v in diff.items()},
                        "curves": {k: fd[k] for k in KEYS}}
        main_rec = exact[args.d]
        report["exact"] = {str(d): v for d, v in exact.items()}
        report["speed_ratio_exact_over_asymptotic"] = main_rec["timing"]["wall_s"] / best["wall_s"]
        rows = []
        for d in dims:
            e = exact[d]
            rows.append([d, e["p"], e["n"], e["timing"]["wall_s"],
                         *[e["max_abs_difference_to_limit"][k] for k in ("train_loss", "test_loss")],
                         *[e["d_times_difference_at_inf"][k] for k in ("train_loss", "test_loss")]])
        print_table("exact finite-d route (one draw each) against the limit", [
            "d", "p", "n", "wall [s]", "max|dL_train|", "max|dL_test|", "d dL_train(inf)", "d dL_test(inf)"], rows)
        print(f"\nspeed ratio exact (d = {args.d}) / asymptotic: {report['speed_ratio_exact_over_asymptotic']:.1f}x")
        if len(dims) >= 2:
            bridge = {}
            for k in ("train_loss", "test_loss"):
                fit = richardson_in_inverse_d(dims, [exact[d]["curves"][k] for d in dims])
                dist = fit["limit"] - cur[k]
                bridge[k] = {"max_abs_limit_minus_asymptotic": float(np.max(np.abs(dist))),
                             "limit_minus_asymptotic_at_inf": float(dist[-1]),
                             "constant_at_inf": float(fit["constant"][-1]),
                             "constant_range": [float(fit["constant"].min()), float(fit["constant"].max())]}
            report["bridge"] = {"dims": dims, "curves": bridge}
            print_table(f"Richardson in 1/d over d = {dims} (one draw each)",
                        ["curve", "max|extrapolated - limit|", "at inf", "C (1/d constant) at inf", "C range"],
                        [[k, b["max_abs_limit_minus_asymptotic"], b["limit_minus_asymptotic_at_inf"],
                          b["constant_at_inf"], "%.3g .. %.3g" % tuple(b["constant_range"])] for k, b in bridge.items()])
    report["contention_warnings"] = warnings
    for w in warnings:
        print("WARNING:", w)
    path = write_json(NAME + ("_quick" if args.quick else ""), report, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
