"""Benchmark: the heavy kernels on NumPy (``cpu``) against a torch device (``cuda`` by default).

One prepared script for a machine with a GPU (and PyTorch: pip install 'rfdm[torch]').  Each kernel runs on
both devices from the same inputs; the table gives the seconds on each, the speed-up and the largest
difference between the two results relative to the largest entry of the NumPy result:

  * exact U, V    rfdm.noise_averaged_statistics (default d = 100, p = 6400, n = 800, t = 0.01, tanh; the
                  bench_statistics.py case): correlation blocks, Hermite coefficients, pass 2;
  * eigh          rfdm.GradientFlow(stats, population): the eigendecomposition of U, Q^T V and the rotation
                  Q^T U~ Q of the population statistics (difference: the eigenvalues);
  * sampler       rfdm.sample with a random-features score (d = 256, p = 4096, 8 grid times, random
                  weights, 4096 samples x 50 steps, batches of 2048; the noise is drawn on the host);
  * nearest nb.   rfdm.metrics.nearest_neighbours, k = 2, 20000 queries x 20000 reference points, d = 64
                  (difference: the distances; the JSON also has the fraction of equal indices).

Every device kernel is run once on a tiny problem first (CUDA context, cuBLAS/cuSOLVER handles) and timed
``--repeats`` times (the fastest counts); the NumPy kernels are timed once (``--cpu-repeats``).  Timings
include the transfers to and from the device (every kernel returns NumPy arrays).

Run:  python benchmarks/bench_gpu.py                            (cpu vs cuda, default sizes; ~2-5 min on an H200 node)
      python benchmarks/bench_gpu.py --small                    (small sizes, seconds; writes bench_gpu_small.json)
      python benchmarks/bench_gpu.py --device torch-cpu --small (smoke check without a GPU)
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

import rfdm
from _common import Timer, machine_info, print_table, write_json
from rfdm.backend import resolve_device
from rfdm.metrics import nearest_neighbours
from rfdm.sampling import RandomFeaturesScore, sample

NAME = "bench_gpu"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="device compared with NumPy: cuda (default), cuda:N or torch-cpu")
    ap.add_argument("--d", type=int, default=100, help="U, V: data dimension (default 100)")
    ap.add_argument("--p", type=int, default=6400, help="U, V: number of features (default 6400)")
    ap.add_argument("--n", type=int, default=800, help="U, V: training points (default 800)")
    ap.add_argument("--t", type=float, default=0.01, help="U, V: diffusion time (default 0.01)")
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--sample-d", type=int, default=256)
    ap.add_argument("--sample-p", type=int, default=4096)
    ap.add_argument("--sample-times", type=int, default=8, help="grid times of the rf score (random weights)")
    ap.add_argument("--n-samples", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--nn-queries", type=int, default=20000)
    ap.add_argument("--nn-reference", type=int, default=20000)
    ap.add_argument("--nn-d", type=int, default=64)
    ap.add_argument("--nn-budget-mib", type=float, default=256.0, help="block budget of the search (both devices)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs on the device (fastest counts)")
    ap.add_argument("--cpu-repeats", type=int, default=1, help="timed runs on NumPy (fastest counts)")
    ap.add_argument("--only", default="statistics,eigh,sampler,nn", help="comma list of kernels to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", action="store_true", help="small sizes (seconds; a smoke check)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_gpu[_small].json)")
    args = ap.parse_args(argv)
    if args.small:
        args.d, args.p, args.n = 20, 400, 80
        args.sample_d, args.sample_p, args.n_samples, args.steps, args.batch_size = 32, 256, 256, 20, 128
        args.nn_queries, args.nn_reference, args.nn_d, args.nn_budget_mib = 2000, 2000, 16, 4.0
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    return args


def max_rel_diff(a, ref) -> float:
    """max |a - ref| / max |ref|."""
    a, ref = np.asarray(a, dtype=float), np.asarray(ref, dtype=float)
    return float(np.max(np.abs(a - ref)) / max(float(np.max(np.abs(ref))), 1e-300))


def timed(fn, backend, repeats: int):
    """(result of the last run, fastest timing record, all records); waits for the device after each run."""
    recs, out = [], None
    for _ in range(max(1, repeats)):
        with Timer() as tm:
            out = fn()
            backend.sync()
        recs.append(tm.record())
    return out, min(recs, key=lambda r: r["wall_s"]), recs


def rf_score(d, p, K, seed):
    rng = np.random.default_rng(seed)
    features = rfdm.RandomFeatures.sample(d, p, "tanh", rng)
    weights = rng.standard_normal((K, d, p)) * (1.0 / math.sqrt(d))
    return RandomFeaturesScore(features, np.geomspace(0.01, 4.0, K), weights)


def warm_up(dev) -> dict:
    """Tiny runs of every kernel on the device (context creation, library handles, first-call compilation)."""
    with Timer() as tm:
        f = rfdm.RandomFeatures.sample(4, 16, "tanh", rng=0)
        X = rfdm.GaussianData(4).sample(8, np.random.default_rng(0))
        law = rfdm.GaussianData(4)
        rfdm.GradientFlow(rfdm.noise_averaged_statistics(f, X, 0.1, device=dev),
                          rfdm.population_statistics(f, law, 0.1, device=dev), device=dev)
        sample(rf_score(4, 16, 2, 0), 8, steps=3, T=1.0, device=dev)
        nearest_neighbours(np.ones((5, 3)), np.arange(12.0).reshape(4, 3), 2, device=dev)
        dev.sync()
    return tm.record()


def main(argv=None):
    args = parse_args(argv)
    dev = resolve_device(args.device)  # a bad device (or no GPU) stops here, with one sentence
    cpu = resolve_device("cpu")
    machine = machine_info()
    machine["device"] = dev.describe()
    print(f"rfdm {rfdm.__version__}: NumPy vs {dev.name} ({dev.describe()}); {machine['cpu_count']} cores, "
          f"load {machine['loadavg_at_start']}", flush=True)
    warm = warm_up(dev)
    print(f"warm-up on {dev.name}: {warm['wall_s']:.2f} s", flush=True)
    rows, results = [], {}

    def compare(key, label, size, run, diff):
        """Run ``run(backend)`` on NumPy then on the device; ``diff(dev_result, cpu_result)`` -> dict."""
        r_cpu, t_cpu, all_cpu = timed(lambda: run(cpu), cpu, args.cpu_repeats)
        r_dev, t_dev, all_dev = timed(lambda: run(dev), dev, args.repeats)
        d = diff(r_dev, r_cpu)
        speed = t_cpu["wall_s"] / t_dev["wall_s"] if t_dev["wall_s"] > 0 else math.inf
        results[key] = {"size": size, "cpu": t_cpu, "device": t_dev, "cpu_runs": all_cpu, "device_runs": all_dev,
                        "speed_up": speed, **d}
        rows.append([label, size, t_cpu["wall_s"], t_dev["wall_s"], speed, d["max_rel_diff"]])
        print(f"  {label}: cpu {t_cpu['wall_s']:.3f} s, {dev.name} {t_dev['wall_s']:.3f} s, "
              f"speed-up {speed:.1f}x, max rel diff {d['max_rel_diff']:.2e}", flush=True)
        return r_cpu

    stats = None
    if "statistics" in args.only or "eigh" in args.only:
        features = rfdm.RandomFeatures.sample(args.d, args.p, args.activation, rng=np.random.default_rng(args.seed))
        law = rfdm.GaussianData(args.d)
        X = law.sample(args.n, np.random.default_rng(args.seed + 1))
        size = f"d={args.d} p={args.p} n={args.n}"
        stats = compare("statistics", "exact U, V", size,
                        lambda b: rfdm.noise_averaged_statistics(features, X, args.t, device=b),
                        lambda a, r: {"max_rel_diff": max(max_rel_diff(a.U, r.U), max_rel_diff(a.V, r.V)),
                                      "max_rel_diff_U": max_rel_diff(a.U, r.U), "max_rel_diff_V": max_rel_diff(a.V, r.V),
                                      "truncation_order": [a.info["truncation_order"], r.info["truncation_order"]]})
    if "eigh" in args.only:
        pop = rfdm.population_statistics(features, law, args.t)
        tau = np.r_[np.logspace(-1, 7, 41), np.inf]

        def flow(b):
            return rfdm.GradientFlow(stats, pop, device=b)

        def diff(a, r):
            ca, cr = a.curves(tau), r.curves(tau)
            return {"max_rel_diff": max_rel_diff(a.eigenvalues, r.eigenvalues),
                    "curves_max_rel_diff": max(max_rel_diff(ca[k], cr[k]) for k in ("train_loss", "test_loss", "score_error"))}

        compare("eigh", "eigh of U + Q^T U~ Q", f"p={args.p}", flow, diff)
    if "sampler" in args.only:
        score = rf_score(args.sample_d, args.sample_p, args.sample_times, args.seed)
        size = f"d={args.sample_d} p={args.sample_p} {args.n_samples}x{args.steps}"
        compare("sampler", "sampler (rf score)", size,
                lambda b: sample(score, args.n_samples, steps=args.steps, T=4.0, seed=args.seed,
                                 batch_size=args.batch_size, memory_budget=2 ** 30, device=b).samples,
                lambda a, r: {"max_rel_diff": max_rel_diff(a, r)})
    if "nn" in args.only:
        rng = np.random.default_rng(args.seed + 2)
        q = rng.standard_normal((args.nn_queries, args.nn_d))
        ref = rng.standard_normal((args.nn_reference, args.nn_d))
        budget = int(args.nn_budget_mib * 2 ** 20)
        compare("nn", "nearest neighbours k=2", f"{args.nn_queries}x{args.nn_reference} d={args.nn_d}",
                lambda b: nearest_neighbours(q, ref, 2, memory_budget=budget, device=b),
                lambda a, r: {"max_rel_diff": max_rel_diff(a[0], r[0]),
                              "equal_indices_fraction": float(np.mean(a[1] == r[1]))})

    print_table(f"NumPy (cpu) vs {dev.name}: wall seconds (fastest run), speed-up, max |difference| / max |NumPy result|",
                ["kernel", "size", "cpu [s]", f"{dev.name} [s]", "speed-up", "max rel diff"], rows)
    payload = {"benchmark": NAME, "config": vars(args), "machine": machine, "warm_up": warm, "results": results,
               "measured": "everything (no extrapolation); timings include host <-> device transfers"}
    path = write_json(NAME + ("_small" if args.small else ""), payload, args.out)
    print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    try:
        main()
    except rfdm.InvalidParameterError as exc:
        print(f"bench_gpu: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)
