"""Benchmark of rfdm.nets: DSM training steps per second, and (``--scaling``) tau_mem against n on the digits.

Speed (default).  For each network (residual MLP at widths --mlp-widths, U-Net at base widths --unet-widths)
on the digits (n = --n points, 8x8, scaled as rfdm.nets.data says; one fresh (t, xi) per point and step, t
log-uniform on [0.01, 3], Adam), two ways of computing one full-batch training step are timed on --device:

  * batched   rfdm.nets: one forward/backward of the whole batch (what train_net does);
  * per-sample  the naive loop: one forward/backward per training point, gradients accumulated (divided
              by n), the conventional "plain" implementation of the same loss.

Both are timed over --steps steps after --warmup steps (fastest of --repeats).  Accuracy: the gradient of one
step (same parameters, same draws) of each way against a float64 batched reference (a float64 copy of the
network): relative Frobenius error over all parameters.  The table gives steps/s of each way and the speed-up.

Scaling (--scaling).  train_net on the digits with the residual MLP (width(s) --scaling-width) for every n in
--scaling-n (default 5 values spanning 8x, 16 to 128), n x m = --points-per-step noised points per step (m = noise draws per point),
--scaling-steps full-batch Adam steps, f_mem measured at --evals-per-decade log-spaced steps; tau_mem = the
first measured step with f_mem > 2 % (bracketed by the previous measured step).  Fitted: the least-squares
slope of log tau_mem against log n (tau_mem at the geometric middle of its bracket), its standard error, and
the slopes through the lower and the upper ends of the brackets.

Run:  python benchmarks/bench_nets.py                 (speed on the CPU, ~1-2 min)
      python benchmarks/bench_nets.py --quick         (tiny, seconds; writes bench_nets_quick.json)
      python benchmarks/bench_nets.py --device cuda   (the same on a GPU; one prepared script)
      python benchmarks/bench_nets.py --scaling       (tau_mem vs n; ~5-10 min on 2 cores; bench_nets_scaling.json)
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time

import numpy as np

from _common import Timer, contention_warning, machine_info, print_table, write_json

NAME = "bench_nets"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--n", type=int, default=64, help="training points (full batch)")
    ap.add_argument("--mlp-widths", default="128,512")
    ap.add_argument("--unet-widths", default="8,32")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per way")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke check)")
    ap.add_argument("--scaling", action="store_true", help="measure tau_mem against n instead of speed")
    ap.add_argument("--scaling-n", default="16,24,32,64,128")
    ap.add_argument("--points-per-step", type=int, default=256, help="n x noise draws per step (scaling)")
    ap.add_argument("--scaling-steps", type=int, default=4000)
    ap.add_argument("--scaling-width", default="128", help="MLP width(s), comma-separated: one n sweep per width")
    ap.add_argument("--scaling-lr", type=float, default=6e-3)
    ap.add_argument("--evals-per-decade", type=int, default=8)
    ap.add_argument("--n-samples", type=int, default=200)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/NAME[_quick|_scaling].json)")
    return ap.parse_args(argv)


# -- speed ------------------------------------------------------------------------------------------------

def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


def _rel(gs, ref):
    num = math.sqrt(sum(float(((g.double().cpu() - r.double().cpu()) ** 2).sum()) for g, r in zip(gs, ref)))
    den = math.sqrt(sum(float((r.double().cpu() ** 2).sum()) for r in ref))
    return num / den


def bench_speed(args):
    import torch

    from rfdm.nets import TrainNetConfig, build_network, load_dataset
    from rfdm.nets.config import check_device
    from rfdm.time_integrated import time_law_quantile

    torch.set_num_threads(args.threads)
    dev = torch.device(check_device(args.device))
    rows, records, warnings = [], [], []
    nets = ([("mlp", int(w)) for w in args.mlp_widths.split(",")]
            + [("unet", int(w)) for w in args.unet_widths.split(",")])
    for arch, width in nets:
        cfg = TrainNetConfig(n_train=args.n, arch=arch, width=width)
        data = load_dataset(cfg)
        x_all = torch.as_tensor(data.train, dtype=torch.float32, device=dev)
        torch.manual_seed(args.seed)
        model = build_network(arch, data.shape, width).to(dev)
        for p in model.parameters():   # a generic (non-zero) point of parameter space for the gradient check
            torch.nn.init.normal_(p, std=0.05)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        gen = torch.Generator(device=dev).manual_seed(args.seed)

        def draws():
            t = time_law_quantile(torch.rand(args.n, generator=gen, device=dev), 0.01, 3.0, "log-uniform")
            return t, torch.randn(x_all.shape, generator=gen, device=dev)

        def batched_grad(m, t, xi, x0=x_all):
            m.zero_grad(set_to_none=True)
            m.dsm_losses(x0, t, xi).mean().backward()

        def loop_grad(m, t, xi):
            m.zero_grad(set_to_none=True)
            for i in range(args.n):
                (m.dsm_losses(x_all[i:i + 1], t[i:i + 1], xi[i:i + 1]).sum() / args.n).backward()

        # accuracy: one step's gradient each way against a float64 copy of the network
        t, xi = draws()
        ref_model = copy.deepcopy(model).double()
        batched_grad(ref_model, t.double(), xi.double(), x_all.double())
        ref = _grads(ref_model)
        batched_grad(model, t, xi)
        err_b = _rel(_grads(model), ref)
        loop_grad(model, t, xi)
        err_l = _rel(_grads(model), ref)

        def timed(way):
            best = None
            for _ in range(args.repeats):
                for _ in range(args.warmup):
                    t, xi = draws()
                    way(model, t, xi)
                    opt.step()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                with Timer() as tm:
                    for _ in range(args.steps):
                        t, xi = draws()
                        way(model, t, xi)
                        opt.step()
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                if best is None or tm.wall < best.wall:
                    best = tm
            return best

        tb = timed(batched_grad)
        tl = timed(loop_grad)
        for label, tm in (("batched", tb), ("per-sample", tl)):
            w = contention_warning(f"{arch} W={width} {label}", tm.record(), min_wall=0.2)
            if w:
                warnings.append(w)
                print("WARNING", w)
        sb, sl = args.steps / tb.wall, args.steps / tl.wall
        params = sum(p.numel() for p in model.parameters())
        rows.append([arch, width, params, sb, sl, sb / sl, err_b, err_l])
        records.append({"arch": arch, "width": width, "parameters": params, "n": args.n, "shape": list(data.shape),
                        "steps_per_s_batched": sb, "steps_per_s_per_sample": sl, "speedup": sb / sl,
                        "grad_rel_error_batched": err_b, "grad_rel_error_per_sample": err_l,
                        "timer_batched": tb.record(), "timer_per_sample": tl.record()})
    print_table(f"DSM training steps per second on {dev} (digits, n = {args.n}, full batch, Adam; "
                f"{args.threads} thread(s))",
                ["arch", "width", "params", "batched steps/s", "per-sample steps/s", "speed-up",
                 "grad err batched", "grad err per-sample"], rows)
    return {"device": str(dev), "torch_version": torch.__version__, "threads": args.threads, "results": records,
            "contention_warnings": warnings,
            "accuracy_reference": "float64 copy of the network, same parameters and draws (relative Frobenius)"}


# -- scaling ------------------------------------------------------------------------------------------------

def fit_slope(n, tau):
    x, y = np.log(np.asarray(n, float)), np.log(np.asarray(tau, float))
    A = np.vstack([x, np.ones_like(x)]).T
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ coef
    dof = max(len(x) - 2, 1)
    se = math.sqrt(float(resid @ resid) / dof / float(((x - x.mean()) ** 2).sum()))
    return float(coef[0]), se


def bench_scaling(args):
    import torch

    from rfdm.nets import TrainNetConfig, train_net

    torch.set_num_threads(args.threads)
    ns = [int(v) for v in args.scaling_n.split(",")]
    widths = [int(v) for v in str(args.scaling_width).split(",")]
    runs, rows, fits = [], [], {}
    for width in widths:
        for n in ns:
            m = max(1, round(args.points_per_step / n))
            cfg = TrainNetConfig(n_train=n, noise_draws=m, width=width, lr=args.scaling_lr,
                                 steps=args.scaling_steps, evals_per_decade=args.evals_per_decade,
                                 n_samples=args.n_samples, sample_steps=50, eval_noise=2, n_test=256,
                                 seed=args.seed, device=args.device)
            t0 = time.perf_counter()
            r = train_net(cfg)
            wall = time.perf_counter() - t0
            tm, br = r["tau_mem"], r["tau_mem_interval"]
            mid = None if br is None else math.sqrt(max(br[0], 1) * br[1])
            rows.append([width, n, m, tm, "-" if br is None else f"[{br[0]}, {br[1]}]", mid, r["f_mem"][-1],
                         r["tau_gen"], wall])
            print(f"W = {width}, n = {n}: f_mem {np.round(r['f_mem'], 3).tolist()} at steps {r['step']}", flush=True)
            runs.append({"width": width, "n": n, "noise_draws": m, "wall_s": wall, "tau_mem_mid": mid,
                         **{k: r[k] for k in ("step", "f_mem", "f_mem_ci", "train_loss", "test_loss", "quality",
                                              "energy_distance", "tau_mem", "tau_mem_interval", "tau_gen",
                                              "tau_gen_interval", "config")}})
    print_table("tau_mem (first step with f_mem > 2 %) against n, digits, residual MLP",
                ["width", "n", "m", "tau_mem", "bracket", "geo. middle", "f_mem end", "tau_gen", "seconds"], rows)
    for width in widths:
        ok = [r for r in runs if r["width"] == width and r["tau_mem_interval"] is not None]
        if len(ok) < 3:
            continue
        nn = [r["n"] for r in ok]
        slope, se = fit_slope(nn, [r["tau_mem_mid"] for r in ok])
        lo, _ = fit_slope(nn, [max(r["tau_mem_interval"][0], 1) for r in ok])
        hi, _ = fit_slope(nn, [r["tau_mem_interval"][1] for r in ok])
        fits[str(width)] = {"slope": slope, "stderr": se, "slope_lower_ends": lo, "slope_upper_ends": hi,
                            "n_used": nn}
        print(f"\nW = {width}: slope of log tau_mem against log n: {slope:.2f} +- {se:.2f} (lower bracket ends "
              f"{lo:.2f}, upper ends {hi:.2f}) over n = {nn}")
    missing = [(r["width"], r["n"]) for r in runs if r["tau_mem_interval"] is None]
    if missing:
        print(f"no memorization (f_mem <= 2 %) within {args.scaling_steps} steps for (W, n) = {missing}")
    return {"runs": runs, "fit": fits, "not_memorized": missing, "points_per_step": args.points_per_step}


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.mlp_widths, args.unet_widths, args.steps, args.warmup, args.repeats, args.n = "32", "4", 3, 1, 1, 16
        args.scaling_n, args.scaling_steps, args.n_samples = "8,16", 60, 50
    payload = {"benchmark": NAME, "machine": machine_info(), "args": vars(args)}
    payload["scaling" if args.scaling else "speed"] = bench_scaling(args) if args.scaling else bench_speed(args)
    suffix = "_scaling" if args.scaling else ""
    suffix += "_quick" if args.quick else ""
    if args.device != "cpu":
        suffix += "_" + args.device.replace(":", "")
    path = write_json(NAME + suffix, payload, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
