"""Benchmark: statistics of the time-integrated model (issue 15), today's path against the reuse across t nodes.

Target: the time-integrated training and population statistics at d = 64, psi_p = 32, psi_n = 8 (p = 2048,
n = 512; tanh, Q log-uniform on [0.01, 2], t_rtol = 1e-5) in <= 10 minutes on 2 cores, U unchanged to 1e-10.

What is measured:
  * at the comparison size (default d = 32, psi_p = 32, psi_n = 8: p = 1024, n = 256) the training statistics
    with ``reuse_across_nodes=False`` (today's path: every node's first Mehler pass examines 12 orders and is
    redone up to 40 when the series needs more, pass 2 recomputes the Hermite coefficients) and with the
    reuse (order hint from the nodes done so far, the first pass's coefficients kept for pass 2); the ratio of
    the times and the relative difference of the two U (Frobenius and max entry);
  * with --target, the new path at d = 64, psi_p = 32, psi_n = 8: training statistics, population statistics
    and the eigendecomposition of U (everything the timescales need), each timed; and the old path's time
    extrapolated from the comparison size by the measured ratio (the work of both scales as n p^2 per node).
  * the multi-time Gaussian equivalent (rfdm.multitime) at the comparison size: its time against the exact
    U's and the KS distance of the two spectra.

Run:  python benchmarks/bench_time_integrated.py              (comparison size; ~3 minutes on 2 idle cores)
      python benchmarks/bench_time_integrated.py --target     (adds the target size, ~5-8 more minutes)
      python benchmarks/bench_time_integrated.py --quick      (d = 12, seconds)
Writes benchmarks/results/bench_time_integrated.json (or --out).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import rfdm
from _common import Timer, contention_warning, machine_info, print_table, relative_frobenius, write_json

NAME = "bench_time_integrated"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=32, help="comparison size: input dimension (default 32)")
    ap.add_argument("--psi-p", type=float, default=32.0)
    ap.add_argument("--psi-n", type=float, default=8.0)
    ap.add_argument("--time-law", default="log-uniform")
    ap.add_argument("--target", action="store_true", help="also run the new path at d = 64 (p = 2048, n = 512)")
    ap.add_argument("--quick", action="store_true", help="d = 12 (seconds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


def setup(d, psi_p, psi_n, time_law, seed, reuse=True):
    rng = np.random.default_rng(seed)
    features = rfdm.RandomFeatures.sample(d, int(round(psi_p * d)), "tanh", rng)
    law = rfdm.GaussianData(d)
    X = law.sample(int(round(psi_n * d)), rng)
    from rfdm.time_integrated import TimeIntegratedModel
    model = TimeIntegratedModel.sample(features, rng, time_law=time_law, t_rtol=1e-5, reuse_across_nodes=reuse)
    return model, law, X


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.d, args.target = 12, False
    out = {"machine": machine_info(), "args": vars(args), "warnings": []}
    d, pp, pn = args.d, args.psi_p, args.psi_n
    rows = []
    U = {}
    for reuse in (False, True):
        model, law, X = setup(d, pp, pn, args.time_law, args.seed, reuse)
        with Timer() as tm:
            U[reuse] = model.training_statistics(X).U
        rec = tm.record()
        out[f"compare_reuse_{reuse}"] = dict(rec, t_nodes=model.info["t_nodes"])
        w = contention_warning(f"training statistics (reuse={reuse})", rec)
        if w:
            out["warnings"].append(w)
        rows.append(["today (no reuse)" if not reuse else "reuse across nodes", model.features.p, X.shape[0],
                     model.info["t_nodes"], rec["wall_s"], rec["cpu_s"]])
    ratio = out["compare_reuse_False"]["cpu_s"] / out["compare_reuse_True"]["cpu_s"]
    diff_f = relative_frobenius(U[True], U[False])
    diff_max = float(np.abs(U[True] - U[False]).max() / np.abs(U[False]).max())
    out.update(cpu_speedup=ratio, relative_frobenius_difference=diff_f, relative_max_difference=diff_max)
    print_table(f"Time-integrated training statistics, d = {d}, psi_p = {pp:g}, psi_n = {pn:g} ({args.time_law})",
                ["path", "p", "n", "t nodes", "wall s", "cpu s"], rows)
    print(f"CPU speed-up {ratio:.2f}x; U difference: relative Frobenius {diff_f:.2e}, max entry {diff_max:.2e}")

    # the multi-time Gaussian equivalent at the same size
    from rfdm.multitime import equivalent_training_matrix, ks_two_sample, multitime_coefficients
    model, law, X = setup(d, pp, pn, args.time_law, args.seed)
    with Timer() as tm:
        co = multitime_coefficients(model, 33)
        U_eq = equivalent_training_matrix(model, co, X, args.seed + 1)
    with Timer() as te:
        ev_exact = np.linalg.eigvalsh(U[True])
        ev_eq = np.linalg.eigvalsh(U_eq)
    ks = ks_two_sample(ev_exact, ev_eq)
    out["equivalent"] = dict(tm.record(), ks_distance=ks, eigh=te.record())
    print(f"Multi-time equivalent: {tm.wall:.1f} s wall ({tm.cpu:.1f} s cpu) against the exact U's "
          f"{out['compare_reuse_True']['wall_s']:.1f} s; KS distance of the spectra {ks:.3f}")

    if args.target:
        model, law, X = setup(64, 32.0, 8.0, args.time_law, args.seed)
        rec = {}
        with Timer() as tt:
            stats = model.training_statistics(X)
        rec["training"] = tt.record()
        with Timer() as tp:
            pop = model.population_statistics(law)
        rec["population"] = tp.record()
        with Timer() as tf:
            flow = rfdm.GradientFlow(stats)
            flow.add_quadratic_form("test_loss", pop.U, pop.V, 1.0, pop.loss_constant)
        rec["flow"] = tf.record()
        total_wall = sum(r["wall_s"] for r in rec.values())
        total_cpu = sum(r["cpu_s"] for r in rec.values())
        out["target"] = dict(rec, total_wall_s=total_wall, total_cpu_s=total_cpu, t_nodes=model.info["t_nodes"],
                             old_training_cpu_s_extrapolated=rec["training"]["cpu_s"] * ratio)
        for k, r in rec.items():
            w = contention_warning(f"target {k}", r)
            if w:
                out["warnings"].append(w)
        print_table("Target d = 64, psi_p = 32, psi_n = 8 (p = 2048, n = 512), new path",
                    ["step", "wall s", "cpu s"], [[k, r["wall_s"], r["cpu_s"]] for k, r in rec.items()]
                    + [["total", total_wall, total_cpu],
                       ["old training (extrapolated by the ratio)", "-", rec["training"]["cpu_s"] * ratio]])
    for w in out["warnings"]:
        print("WARNING:", w)
    path = write_json(NAME + ("_quick" if args.quick else ""), out, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
