"""Benchmark: throughput of the backward-process sampler (rfdm.sample) and memory of the blocked
nearest-neighbour search (rfdm.metrics).

Targets (issue "Sampling and memorization"):
  * sampler throughput with the random-features score, in GFLOP/s of score evaluations, >= 50 % of the
    machine's dense matrix-multiply rate measured in the same run;
  * nearest-neighbour search: peak memory (tracemalloc) within the block budget plus the outputs, for a
    problem whose full distance matrix is ~100x the budget.

Flop count: a random-features score evaluation is two matrix products, x W^T/sqrt(d) (2 p d flops per sample)
and sigma(.) A^T/sqrt(p) (2 p d), so 4 p d per sample and step (the p activations and the O(d) update of the
step are not counted).  The reference rate is the best of ``--mm-repeats`` products of two square
``--mm-size`` matrices (2 n^3 flops), measured before and after the sampler; the larger is used.
The sampler is timed end to end (per-sample noise streams, batching, the step update included); the score
alone on one batch is timed too, to separate the sampler's overhead from the activation's cost.

Run:  python benchmarks/bench_sampling.py           (default size, ~1 minute on 2 cores)
      python benchmarks/bench_sampling.py --quick   (small size, seconds; writes bench_sampling_quick.json)
"""

from __future__ import annotations

import argparse
import math
import sys
import tracemalloc

import numpy as np

import rfdm
from _common import Timer, contention_warning, machine_info, print_table, write_json
from rfdm.metrics import energy_distance, nearest_neighbours
from rfdm.sampling import EmpiricalScore, RandomFeaturesScore, sample

NAME = "bench_sampling"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=256, help="dimension of the sampler benchmark (default 256)")
    ap.add_argument("--p", type=int, default=4096, help="number of random features (default 4096)")
    ap.add_argument("--n-samples", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--times", type=int, default=8, help="grid times of the rf score (random weights)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3, help="sampler runs (the fastest counts)")
    ap.add_argument("--mm-size", type=int, default=2048)
    ap.add_argument("--mm-repeats", type=int, default=5)
    ap.add_argument("--emp-n", type=int, default=4096, help="training points of the empirical-score run")
    ap.add_argument("--nn-queries", type=int, default=20000)
    ap.add_argument("--nn-reference", type=int, default=20000)
    ap.add_argument("--nn-d", type=int, default=64)
    ap.add_argument("--nn-budget-mib", type=float, default=16.0)
    ap.add_argument("--target-fraction", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.d, args.p, args.n_samples, args.steps, args.batch_size = 64, 1024, 512, 10, 512
        args.mm_size, args.emp_n, args.repeats = 1024, 1024, 2
        args.nn_queries, args.nn_reference, args.nn_budget_mib = 4000, 4000, 2.0
    return args


def matmul_rate(n: int, repeats: int, rng) -> dict:
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    a @ b  # warm up
    best, recs = math.inf, []
    for _ in range(repeats):
        with Timer() as tm:
            a @ b
        recs.append(tm.record())
        best = min(best, tm.wall)
    return {"size": n, "gflops": 2 * n ** 3 / best / 1e9, "best_wall_s": best, "timings": recs}


def rf_score(d, p, K, seed):
    rng = np.random.default_rng(seed)
    features = rfdm.RandomFeatures.sample(d, p, "tanh", rng)
    weights = rng.standard_normal((K, d, p)) * (1.0 / math.sqrt(d))
    return RandomFeaturesScore(features, np.geomspace(0.01, 4.0, K), weights)


def bench_sampler(args, rng) -> dict:
    score = rf_score(args.d, args.p, args.times, args.seed)
    flops = args.n_samples * args.steps * score.flops_per_sample()
    runs = []
    for r in range(args.repeats):
        with Timer() as tm:
            res = sample(score, args.n_samples, steps=args.steps, T=4.0, seed=args.seed + r,
                         batch_size=args.batch_size, memory_budget=2 ** 30)
        assert np.all(np.isfinite(res.samples))
        runs.append(dict(tm.record(), gflops=flops / tm.wall / 1e9))
    best = max(runs, key=lambda x: x["gflops"])
    # the score alone on one batch (no noise, no update): the activation's share of the time
    x = rng.standard_normal((args.batch_size, args.d))
    n_eval = max(3, args.steps)
    with Timer() as tm:
        for k in range(n_eval):
            score.score(x, 0.5 + 1e-3 * k)
    score_only = dict(tm.record(), gflops=n_eval * args.batch_size * score.flops_per_sample() / tm.wall / 1e9)
    h = x @ score._Wt
    with Timer() as ta:
        for _ in range(n_eval):
            np.tanh(h, out=h)
    return {"d": args.d, "p": args.p, "n_samples": args.n_samples, "steps": args.steps, "batch_size": args.batch_size,
            "flops_per_sample_step": score.flops_per_sample(), "total_flops": flops, "runs": runs,
            "best_gflops": best["gflops"], "best_wall_s": best["wall_s"], "score_only": score_only,
            "activation_share_of_score_time": ta.wall / tm.wall, "info": res.info}


def bench_empirical(args, rng) -> dict:
    X = rng.standard_normal((args.emp_n, args.d))
    score = EmpiricalScore(X)
    n, steps = min(args.n_samples, 1024), max(5, args.steps // 2)
    flops = n * steps * score.flops_per_sample()
    with Timer() as tm:
        sample(score, n, steps=steps, T=4.0, seed=args.seed, memory_budget=2 ** 30)
    return dict(tm.record(), n_train=args.emp_n, n_samples=n, steps=steps, gflops=flops / tm.wall / 1e9)


def bench_nn(args, rng) -> dict:
    q = rng.standard_normal((args.nn_queries, args.nn_d))
    r = rng.standard_normal((args.nn_reference, args.nn_d))
    budget = int(args.nn_budget_mib * 2 ** 20)
    full = 8 * args.nn_queries * args.nn_reference
    outputs = args.nn_queries * 2 * 16  # distances and indices, k = 2
    tracemalloc.start()
    with Timer() as tm:
        dist, idx = nearest_neighbours(q, r, 2, memory_budget=budget)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # brute-force check on a subset of queries
    sub = rng.choice(args.nn_queries, 200, replace=False)
    D = np.sqrt(np.maximum((q[sub] ** 2).sum(1)[:, None] - 2 * q[sub] @ r.T + (r ** 2).sum(1)[None], 0))
    ok = bool(np.array_equal(np.argsort(D, axis=1)[:, :2], idx[sub]))
    m = min(args.nn_queries, 6000)
    tracemalloc.start()
    with Timer() as te:
        energy_distance(q[:m], r[:m], memory_budget=budget)
    _, peak_e = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"queries": args.nn_queries, "reference": args.nn_reference, "d": args.nn_d, "budget_bytes": budget,
            "full_matrix_bytes": full, "output_bytes": outputs, "peak_bytes": peak,
            "peak_over_budget": peak / budget, "within_budget_plus_outputs": peak <= budget + outputs + 2 ** 20,
            "brute_force_agrees_on_200": ok, "timing": tm.record(),
            "energy_distance": {"points": m, "peak_bytes": peak_e, "peak_over_budget": peak_e / budget,
                                "timing": te.record()}}


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    machine = machine_info()
    print(f"rfdm {rfdm.__version__}; {machine['cpu_count']} cores; load {machine['loadavg_at_start']}", flush=True)
    mm1 = matmul_rate(args.mm_size, args.mm_repeats, rng)
    smp = bench_sampler(args, rng)
    mm2 = matmul_rate(args.mm_size, args.mm_repeats, rng)
    mm_rate = max(mm1["gflops"], mm2["gflops"])
    fraction = smp["best_gflops"] / mm_rate
    emp = bench_empirical(args, rng)
    nn = bench_nn(args, rng)
    print_table("Sampler throughput (random-features score, 4 p d flops per sample and step)",
                ["quantity", "value"],
                [["d, p, samples x steps", f"{args.d}, {args.p}, {args.n_samples} x {args.steps}"],
                 ["matmul rate before / after (GFLOP/s)", f"{mm1['gflops']:.1f} / {mm2['gflops']:.1f}"],
                 ["sampler, best of runs (GFLOP/s)", smp["best_gflops"]],
                 ["fraction of matmul rate", fraction],
                 [f"target >= {args.target_fraction:.0%}", fraction >= args.target_fraction],
                 ["score alone on one batch (GFLOP/s)", smp["score_only"]["gflops"]],
                 ["activation share of the score time", smp["activation_share_of_score_time"]],
                 ["empirical score sampler (GFLOP/s, 4 n d)", emp["gflops"]]])
    print_table("Nearest-neighbour search (k = 2) memory", ["quantity", "value"],
                [["queries x reference x d", f"{nn['queries']} x {nn['reference']} x {nn['d']}"],
                 ["full distance matrix (MiB)", nn["full_matrix_bytes"] / 2 ** 20],
                 ["block budget (MiB)", nn["budget_bytes"] / 2 ** 20],
                 ["tracemalloc peak (MiB)", nn["peak_bytes"] / 2 ** 20],
                 ["peak / budget", nn["peak_over_budget"]],
                 ["within budget + outputs", nn["within_budget_plus_outputs"]],
                 ["brute force agrees (200 queries)", nn["brute_force_agrees_on_200"]],
                 ["search wall (s)", nn["timing"]["wall_s"]],
                 ["energy distance peak / budget", nn["energy_distance"]["peak_over_budget"]]])
    warnings = [w for w in [contention_warning("sampler (last run)", smp["runs"][-1]),
                            contention_warning("matmul (before)", mm1["timings"][-1]),
                            contention_warning("nearest neighbours", nn["timing"])] if w]
    for w in warnings:
        print("WARNING:", w)
    payload = {"benchmark": NAME, "contention_warnings": warnings, "config": vars(args), "machine": machine,
               "matmul_before": mm1, "matmul_after": mm2, "matmul_gflops": mm_rate, "sampler": smp,
               "fraction_of_matmul": fraction, "empirical_sampler": emp, "nearest_neighbours": nn,
               "targets": {"throughput_fraction": args.target_fraction,
                           "throughput_met": fraction >= args.target_fraction,
                           "nn_memory_met": nn["within_budget_plus_outputs"]},
               "measured": "everything (no extrapolation)"}
    path = write_json(NAME + ("_quick" if args.quick else ""), payload, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
