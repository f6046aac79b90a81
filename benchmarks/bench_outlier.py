"""Benchmark: the BBP outlier theory of U for two-cluster mixture data (rfdm.outlier) against exact spectra.

Setting (default): d = 300, psi_p = 4, psi_n = 2 (p = 1200, n = 600), tanh, sigma_x = 1, over the grid
t in {0.05, 0.2, 0.5} x |m| in {0.5, 1.5, 2.5, 4}.  For every (t, |m|):

* theory (d -> infinity; OutlierProblem with Modes.asymptotic): the bulk's right edge, the threshold |m|_c(t),
  the outlier lambda_out (or none below the threshold) and the squared overlap of its eigenvector with W m;
  its time is that of a fresh computation (coefficients, modes, edge search, outlier);
* finite-W theory (Modes.from_weights for the sampled W and direction of m), which removes the O(1/sqrt(d))
  fluctuation of the direction of m relative to W;
* exact: the top eigenpair of the exact noise-averaged U (rfdm.noise_averaged_statistics + numpy eigh) of a
  MixtureData sample (random direction of m, balanced clusters), for --seeds seeds; mean and sd of the top
  eigenvalue, mean squared overlap with W m/|W m|; time = noise_averaged_statistics + eigh per sample.
  For one seed W, the direction, the labels and the cluster noise are shared by all (t, |m|), so the columns
  of the table differ by t and |m| only.

The relative error is (mean exact top - theory)/theory where the theory has an outlier, else (mean exact
top - edge)/edge (marked "vs edge": a bulk eigenvalue at finite-size distance of the edge).  The outlier of a
finite sample fluctuates from sample to sample by O(1/sqrt(d)) (a few % at d = 300, see tests/test_outlier.py),
so several seeds are used and their sd reported.

Run:  python benchmarks/bench_outlier.py            (default size, ~2-3 minutes on 2 idle cores)
      python benchmarks/bench_outlier.py --quick    (d = 100, one seed, seconds)
Writes benchmarks/results/bench_outlier.json (bench_outlier_quick.json with --quick; or --out).
"""

from __future__ import annotations

import argparse

import numpy as np

import rfdm
from rfdm.data import MixtureData
from rfdm.features import RandomFeatures, noise_averaged_statistics
from rfdm.outlier import Modes, OutlierProblem
from rfdm.spectrum import gep_coefficients
from _common import Timer, contention_warning, loadavg, machine_info, print_table, write_json

NAME = "bench_outlier"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=300, help="data dimension (default 300)")
    ap.add_argument("--psi-p", type=int, default=4, help="p/d, an integer (default 4)")
    ap.add_argument("--psi-n", type=int, default=2, help="n/d, an integer (default 2)")
    ap.add_argument("--t", default="0.05,0.2,0.5", help="diffusion times (default 0.05,0.2,0.5)")
    ap.add_argument("--m", default="0.5,1.5,2.5,4", help="values of |m| (default 0.5,1.5,2.5,4)")
    ap.add_argument("--sigma-x", type=float, default=1.0, help="cluster standard deviation (default 1)")
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--seeds", type=int, default=3, help="samples (W, direction, data) per grid point (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--quick", action="store_true", help="d = 100, one seed, t in {0.05, 0.5}, |m| in {0.5, 2.5}")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/NAME.json)")
    args = ap.parse_args(argv)
    if args.quick:
        args.d, args.seeds, args.t, args.m = 100, 1, "0.05,0.5", "0.5,2.5"
    args.t = [float(x) for x in args.t.split(",")]
    args.m = [float(x) for x in args.m.split(",")]
    return args


def theory_row(act, t, m_norm, psi_p, psi_n, sigma_x):
    """The d -> infinity theory from scratch, timed."""
    with Timer() as tm:
        c = gep_coefficients(act, t, sigma_x ** 2)
        pr = OutlierProblem(c, psi_n, Modes.asymptotic(psi_p, c))
        lam, ov = pr.outlier(m_norm)
        edge, thr = pr.bulk_right_edge(), pr.threshold_m_norm()
    return {"outlier": lam, "overlap": ov if lam is not None else None, "edge": edge, "threshold": thr,
            "timing": tm.record()}


def sample(args, seed):
    """W and the direction of m of one seed (the data are drawn per |m| from the stream [seed, 2])."""
    rng_w, rng_m = (np.random.default_rng([seed, k]) for k in range(2))
    feats = RandomFeatures.sample(args.d, args.psi_p * args.d, args.activation, rng_w)
    direction = rng_m.standard_normal(args.d)
    return feats, direction / np.linalg.norm(direction)


def main(argv=None):
    args = parse_args(argv)
    machine = machine_info()
    d, p, n = args.d, args.psi_p * args.d, args.psi_n * args.d
    seeds = list(range(args.seed, args.seed + args.seeds))
    config = {"d": d, "p": p, "n": n, "psi_p": args.psi_p, "psi_n": args.psi_n, "t": args.t, "m_norm": args.m,
              "sigma_x": args.sigma_x, "activation": args.activation, "seeds": seeds,
              "data": "W from the seed stream [seed, 0], a random direction of m from [seed, 1], "
                      "MixtureData(...).sample(n, [seed, 2], balanced=True) (same labels and noise for every |m|)",
              "quick": args.quick}
    print(f"rfdm {rfdm.__version__}: BBP outlier theory vs exact U, d={d} p={p} n={n} {args.activation} "
          f"sigma_x={args.sigma_x:g}, {len(seeds)} seed(s)")

    samples = {s: sample(args, s) for s in seeds}
    rows, table, warnings = [], [], []
    for t in args.t:
        c = gep_coefficients(args.activation, t, args.sigma_x ** 2)
        finite_problems = {s: OutlierProblem(c, args.psi_n, Modes.from_weights(samples[s][0].W, samples[s][1], c))
                           for s in seeds}
        for m in args.m:
            th = theory_row(args.activation, t, m, args.psi_p, args.psi_n, args.sigma_x)
            exact, finite = [], []
            for s in seeds:
                feats, direction = samples[s]
                law = MixtureData(d, m_norm=m, direction=direction, sigma_x=args.sigma_x)
                X = law.sample(n, np.random.default_rng([s, 2]), balanced=True)
                with Timer() as tu:
                    U = noise_averaged_statistics(feats, X, t).U
                with Timer() as te:
                    ev, vec = np.linalg.eigh(U)
                wm = feats.W @ direction
                exact.append({"seed": s, "top": float(ev[-1]), "second": float(ev[-2]),
                              "overlap": float((vec[:, -1] @ wm) ** 2 / (wm @ wm)),
                              "timing_statistics": tu.record(), "timing_eigh": te.record(),
                              "time_s": tu.wall + te.wall})
                lam_f, ov_f = finite_problems[s].outlier(m)
                finite.append({"seed": s, "outlier": lam_f, "overlap": ov_f if lam_f is not None else None,
                               "edge": finite_problems[s].bulk_right_edge()})
                for label, rec in (("noise_averaged_statistics", tu.record()), ("eigh", te.record())):
                    w = contention_warning(f"{label} (t={t:g}, |m|={m:g}, seed {s})", rec) if rec["wall_s"] > 0.5 else None
                    if w:
                        warnings.append(w)
            tops = np.array([e["top"] for e in exact])
            top_mean = float(tops.mean())
            top_sd = float(tops.std(ddof=1)) if len(tops) > 1 else None
            ov_mean = float(np.mean([e["overlap"] for e in exact]))
            fin = [f["outlier"] for f in finite if f["outlier"] is not None]
            fin_mean = float(np.mean(fin)) if len(fin) == len(finite) else None
            if th["outlier"] is not None:
                rel, rel_kind = top_mean / th["outlier"] - 1, "vs outlier"
            else:
                rel, rel_kind = top_mean / th["edge"] - 1, "vs edge"
            t_exact = float(np.mean([e["time_s"] for e in exact]))
            row = {"t": t, "m_norm": m, "threshold_m_norm": th["threshold"], "bulk_right_edge": th["edge"],
                   "outlier_theory": th["outlier"], "overlap_theory": th["overlap"],
                   "outlier_finite_w_mean": fin_mean, "finite_w": finite,
                   "exact_top_mean": top_mean, "exact_top_sd": top_sd, "exact_overlap_mean": ov_mean,
                   "relative_error": rel, "relative_error_kind": rel_kind, "exact": exact,
                   "time_theory_s": th["timing"]["wall_s"], "timing_theory": th["timing"],
                   "time_exact_s": t_exact}
            rows.append(row)
            top_txt = f"{top_mean:.4g}" + (f" ± {top_sd:.2g}" if top_sd is not None else "")
            table.append([f"{t:g}", f"{m:g}", th["threshold"], th["outlier"] if th["outlier"] is not None else "none",
                          fin_mean if fin_mean is not None else "none", top_txt, th["edge"],
                          f"{100 * rel:+.1f} % {rel_kind}", th["overlap"], ov_mean,
                          f"{1e3 * th['timing']['wall_s']:.0f} ms", f"{t_exact:.2f} s"])
            print(f"  t={t:g} |m|={m:g}: theory {th['outlier']}, exact {top_txt}, edge {th['edge']:.4g}", flush=True)

    print_table(f"Outlier of U: theory (d -> inf) vs exact spectrum at d = {d} (mean ± sd over {len(seeds)} seed(s))",
                ["t", "|m|", "|m|_c", "theory", "finite-W", "exact top", "bulk edge", "rel. error",
                 "ov. theory", "ov. exact", "t theory", "t exact"], table)
    above = [r for r in rows if r["outlier_theory"] is not None]
    summary = {"max_abs_relative_error_above_threshold": max((abs(r["relative_error"]) for r in above), default=None),
               "mean_relative_error_above_threshold": float(np.mean([r["relative_error"] for r in above])) if above else None,
               "max_abs_overlap_difference_above_threshold": max((abs(r["exact_overlap_mean"] - r["overlap_theory"])
                                                                  for r in above), default=None),
               "median_time_theory_s": float(np.median([r["time_theory_s"] for r in rows])),
               "median_time_exact_s": float(np.median([r["time_exact_s"] for r in rows]))}
    print(f"\nabove threshold: max |rel. error| {100 * summary['max_abs_relative_error_above_threshold']:.1f} %, "
          f"mean {100 * summary['mean_relative_error_above_threshold']:+.1f} %; max |overlap diff| "
          f"{summary['max_abs_overlap_difference_above_threshold']:.3f}; median times: theory "
          f"{1e3 * summary['median_time_theory_s']:.0f} ms, exact {summary['median_time_exact_s']:.2f} s per sample")
    for w in warnings:
        print("WARNING:", w)
    payload = {"benchmark": NAME, "contention_warnings": warnings, "config": config, "machine": machine,
               "rows": rows, "summary": summary,
               "provenance": {"measured": ["every number: theory, finite-W theory, exact spectra, timings"],
                              "extrapolated": []},
               "loadavg_at_end": loadavg()}
    path = write_json(NAME + ("_quick" if args.quick else ""), payload, args.out)
    print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
