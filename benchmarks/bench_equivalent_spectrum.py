"""Benchmark: the self-consistent spectrum of the multi-time Gaussian equivalent (issue 15, docs/theory.md §7.2)
against the conventional method, sampling U_eq and diagonalising it (Monte Carlo over Omega).

What is measured, per size (d, psi_p, psi_n; tanh, Q log-uniform on [0.01, 2], 17 t nodes, one draw of W, b, X):
  * the coefficients (shared by both methods), timed once;
  * the solver (:meth:`rfdm.multitime.EquivalentSpectrum.solve`, default 300 grid points): CPU and wall time,
    its run-time checks, the mass of its CDF (1 up to the ladder's quadrature error);
  * Monte Carlo: ``--samples`` samples of U_eq (:func:`rfdm.multitime.equivalent_training_matrix`) and their
    eigenvalues, each timed; the KS distance of each sample from the solver's CDF (the accuracy of one sample
    against the limit law: finite-d corrections plus sampling fluctuation), and the two-sample KS distance
    between two samples (the Monte Carlo noise alone);
  * the ratio solver time / one sample's time.
The solver is not a speed-up at these sizes: one sample of U_eq and its eigh cost O(m p^2 n + p^3), below the
solver's O(N p k^2) per iteration (N grid points, k <= 20 node directions) over its continuation ladder until p
is in the thousands.  What it gives is the deterministic limit law itself (no Omega noise, a CDF exact at every
grid point), which no number of samples at one d gives.

Run:  python benchmarks/bench_equivalent_spectrum.py           (d = 32, 64, 128 at psi_p = 8, psi_n = 4 and d = 32
                                                                 at psi_p = 32, psi_n = 8; ~10 minutes on 2 cores)
      python benchmarks/bench_equivalent_spectrum.py --quick   (d = 16, seconds)
      python benchmarks/bench_equivalent_spectrum.py --sizes 512:8:4   (p = 4096, n = 2048, where the two cost alike)
Writes benchmarks/results/bench_equivalent_spectrum.json (or --out).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import rfdm
from _common import Timer, contention_warning, machine_info, print_table, write_json

NAME = "bench_equivalent_spectrum"
SIZES = ((32, 8.0, 4.0), (64, 8.0, 4.0), (128, 8.0, 4.0), (32, 32.0, 8.0))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="d = 16 only (seconds)")
    ap.add_argument("--sizes", default=None, metavar="D:PSI_P:PSI_N,...",
                    help="sizes instead of the default ones, e.g. 512:8:4 (p = 4096, n = 2048: ~10 CPU minutes)")
    ap.add_argument("--points", type=int, default=300, help="solver grid points (default 300)")
    ap.add_argument("--samples", type=int, default=3, help="Monte Carlo samples of U_eq per size (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


def one_size(d, psi_p, psi_n, args, warnings) -> dict:
    from rfdm.multitime import (EquivalentSpectrum, equivalent_training_matrix, ks_two_sample,
                                multitime_coefficients)
    from rfdm.time_integrated import TimeIntegratedModel

    rng = np.random.default_rng([args.seed, d])
    p, n = int(round(psi_p * d)), int(round(psi_n * d))
    features = rfdm.RandomFeatures.sample(d, p, "tanh", rng)
    model = TimeIntegratedModel.sample(features, rng, time_law="log-uniform")
    X = rfdm.GaussianData(d).sample(n, rng)
    with Timer() as tc:
        co = multitime_coefficients(model, 17)
    with Timer() as ts:
        problem = EquivalentSpectrum.from_coefficients(co, d, n)
        res = problem.solve(args.points)
    samples, evs = [], []
    for k in range(args.samples):
        with Timer() as tm:
            ev = np.linalg.eigvalsh(equivalent_training_matrix(model, co, X, rng))
        evs.append(ev)
        samples.append(dict(tm.record(), ks_to_solver=res.ks_distance(ev)))
    for label, rec in [("coefficients", tc.record()), ("solver", ts.record())] + \
            [(f"sample {k}", s) for k, s in enumerate(samples)]:
        w = contention_warning(f"d={d}, psi_p={psi_p:g}: {label}", rec)
        if w:
            warnings.append(w)
    sample_cpu = float(np.mean([s["cpu_s"] for s in samples]))
    return {"d": d, "psi_p": psi_p, "psi_n": psi_n, "p": p, "n": n, "t_nodes": int(co.t.size),
            "node_rank": int(problem.a.shape[1]), "noise_rank": int(problem.b.shape[1]),
            "coefficients": tc.record(), "solver": dict(ts.record(), checks=res.checks, mass=res.mass,
                                                        points=int(res.lam.size)),
            "samples": samples, "sample_cpu_s_mean": sample_cpu,
            "ks_solver_vs_sample": [s["ks_to_solver"] for s in samples],
            "ks_sample_vs_sample": ks_two_sample(evs[0], evs[1]) if len(evs) > 1 else None,
            "solver_over_sample_cpu": ts.cpu / sample_cpu}


def main(argv=None):
    args = parse_args(argv)
    sizes = ((16, 8.0, 4.0),) if args.quick else SIZES
    if args.sizes:
        sizes = [(int(a), float(b), float(c)) for a, b, c in (x.split(":") for x in args.sizes.split(","))]
    out = {"machine": machine_info(), "args": vars(args), "warnings": [], "sizes": []}
    rows = []
    for d, pp, pn in sizes:
        r = one_size(d, pp, pn, args, out["warnings"])
        out["sizes"].append(r)
        ks = r["ks_solver_vs_sample"]
        rows.append([d, r["p"], r["n"], f"{r['node_rank']}+{r['noise_rank']}", r["solver"]["cpu_s"],
                     r["sample_cpu_s_mean"], r["solver_over_sample_cpu"], f"{min(ks):.3f}-{max(ks):.3f}",
                     "-" if r["ks_sample_vs_sample"] is None else f"{r['ks_sample_vs_sample']:.3f}",
                     f"{r['solver']['mass']:.7f}", all(r["solver"]["checks"].values())])
    print_table("Spectrum of the multi-time equivalent: self-consistent solver against sampling U_eq (Monte Carlo)",
                ["d", "p", "n", "rank", "solver cpu s", "1 sample cpu s", "ratio", "KS solver-sample",
                 "KS sample-sample", "solver mass", "checks"], rows)
    for w in out["warnings"]:
        print("WARNING:", w)
    path = write_json(NAME + ("_quick" if args.quick else "_sizes" if args.sizes else ""), out, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
