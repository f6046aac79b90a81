"""[B25] §2 for real networks, at laptop scale: residual-MLP score networks trained by denoising score matching
on scikit-learn's 8x8 digits (:func:`rfdm.nets.train_net`), f_mem and the digits FID along training for several
training-set sizes n, τ_mem against n (published: τ_mem ∝ n), τ_gen against n (published: flat) and both
against the width W at one n (published: τ_gen ∝ 1/W, τ_mem ∝ n/W); beside them, the random-features model's
exact τ_mem on the same digits.

Network readings (docs/nets.md): τ_mem = first evaluated step with f_mem > 2 %, bracketed by the previous
evaluated step [s₋, s₊] (log-spaced evaluations, ``evals_per_decade`` per decade, so s₊/s₋ ≈ 10^{1/e}); each
run enters the fit at the bracket's geometric middle √(max(s₋, 1) s₊).  τ_gen = first evaluated step whose digits
FID is within 10 % (on a log scale) of its best, entered the same way.  Every n uses n × m ≈ ``points_per_step``
noised points per step (m noise draws per point), so all n have the same gradient noise and cost per step.

Slope: the least-squares slope of log τ against log n over all (n, seed) runs pooled
(:func:`rfdm.published._rf.loglog_slope`), with its residual-based standard error, which holds the spread over
seeds, the bracket quantisation and any curvature of the law; the slopes through the lower and the upper bracket
ends are reported beside it.  Tolerance against the published exponent: the larger of 2 standard errors (≈ 95 %)
and the resolution of the evaluation grid over the range of n, log(s₊/s₋)/log(n_max/n_min) (a single grid step
over the whole range).

Random-features reading (docs/theory.md §2–3): the per-time model at t = ``rf_t`` with p = ``rf_p`` tanh features
on the same standardized digits: U, V of the training points by :func:`rfdm.features.noise_averaged_statistics`
(exact noise average), the test loss from the same exact statistics of the held-out points (the empirical
law of the held-out digits stands for the population), the closed-form gradient flow
(:class:`rfdm.dynamics.GradientFlow`) on a log grid of τ to the end of training, and τ_mem = the τ where the
generalization gap reaches half its final value (:func:`rfdm.time_integrated.timescales_from_curves`), τ_gen =
where the test loss has made half of its drop.  The RF τ is the theory's training time, the network's τ is in
optimizer steps: only the slopes are compared.

Measured (quick preset, seed 0; 308 s of CPU on one core, 458 s wall on a shared 2-core machine; the numbers are
deterministic): τ_mem ∝ n^{0.57 ± 0.04} over n = 16–128 (3 seeds pooled; the same 0.57 through the lower or upper
bracket ends), steepening to a local slope 0.81 between n = 64 and 128; τ_gen ∝ n^{0.39 ± 0.05}; at n = 64,
τ_mem ∝ W^{−0.55 ± 0.11} and τ_gen ∝ W^{−0.58 ± 0.28} over W = 128–256; the random-features model on the same
digits (t = 0.1, p = 512): τ_mem ∝ n^{0.92 ± 0.04}, τ_gen ∝ n^{0.40 ± 0.02}.  Verdicts: τ_mem in n, τ_gen in n
and τ_mem in W differ from [B25] (reasons in the report entry), τ_gen in W agrees within its wide tolerance.
The sampler's resolution does not move τ_mem (100 sampler steps and 256 samples give the same brackets as 40 and
128 at n = 16 and 128).

Measured (paper preset: n = 16–512, 8000 steps, 5 seeds, W = 64–512 at n = 128; seed 0; 5060 s of CPU on one core,
1 h 30 min wall on a shared 2-core machine, 0.55 GB peak RSS): τ_mem ∝ n^{0.95 ± 0.06} over n = 16–512 (30 runs;
the same through the lower or upper bracket ends), which agrees with [B25]'s τ_mem ∝ n within its tolerance
0.12; the local slope steepens to 2.1 between n = 256 and 512, where f_mem reaches only 0.14 by the end of training.
τ_gen ∝ n^{0.31 ± 0.03} (differs from flat; the random-features model on the same digits gives 0.29 ± 0.01: the best
reachable quality still improves with n at n ≤ 512); at n = 128, τ_mem ∝ W^{−0.45 ± 0.07} (5 of 20 runs reached no
τ_mem within 8000 steps and are left out, which biases it low) and τ_gen ∝ W^{−0.68 ± 0.13} (just outside
[−1.27, −0.73]); the random-features τ_mem (t = 0.1, p = 1024): n^{0.78 ± 0.05}, which differs from the network's
0.95 (different models and readings: only the trends are expected to agree).  Verdict: differs (τ_gen in n, both W
slopes, the internal comparison); τ_mem in n agrees.
"""

from __future__ import annotations

import importlib.util
import math
import time

import numpy as np

from ..errors import InvalidParameterError
from . import check_preset
from ._rf import loglog_slope
from .claims import Check, FigureClaim, Tolerance, internal_disagreement

FIGURE_ID = "B25-sec2-nets"
PUBLISHED_SETTING = {"network": "U-Net (base width W)", "data": "grey-scale CelebA 32x32",
                     "n": "128 … 32 768", "f_mem": "nearest/second-nearest < 1/3",
                     "claims": "τ_gen flat in n, τ_mem ∝ n; τ_gen ∝ 1/W, τ_mem ∝ n/W"}
#: quick: about 5 min of CPU on one core (measured: 308 s; the report entry's cpu_s / runtime_s); paper: a wider n
#: range, more steps, seeds and widths (measured: 5060 s of CPU on one core)
PRESETS = {
    "quick": {"ns": (16, 24, 32, 64, 128), "seeds": 3, "steps": 2000, "widths": (128, 192, 256), "n_width": 64,
              "width": 128, "lr": 6e-3, "points_per_step": 256, "evals_per_decade": 8, "n_samples": 128,
              "sample_steps": 40, "eval_noise": 2, "n_test": 256, "rf_p": 512, "rf_t": 0.1},
    "paper": {"ns": (16, 32, 64, 128, 256, 512), "seeds": 5, "steps": 8000, "widths": (64, 128, 256, 512),
              "n_width": 128, "width": 128, "lr": 6e-3, "points_per_step": 512, "evals_per_decade": 10,
              "n_samples": 256, "sample_steps": 100, "eval_noise": 4, "n_test": 512, "rf_p": 1024, "rf_t": 0.1},
}


def require_torch() -> None:
    """One sentence (InvalidParameterError) when PyTorch or scikit-learn is missing."""
    for module, what in (("torch", "PyTorch"), ("sklearn", "scikit-learn")):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a module set to None in sys.modules (blocked)
            spec = None
        if spec is None:
            raise InvalidParameterError(f"{FIGURE_ID} trains PyTorch networks on the digits and needs {what}, which "
                                        "is not installed; install the extra: pip install 'rfdm[nets]'.")


def bracket_middle(interval) -> float:
    """Geometric middle √(max(s₋, 1) s₊) of a bracket [s₋, s₊] of evaluated steps (NaN without one)."""
    if interval is None:
        return math.nan
    lo, hi = interval
    return math.sqrt(max(float(lo), 1.0) * float(hi))


def pooled_slope(x, y) -> dict:
    """Least-squares slope of log y against log x over pooled runs (x repeated for each seed), its standard error
    and the number of finite points; NaN entries (no τ within the run) are left out."""
    x, y = np.ravel(np.asarray(x, float)), np.ravel(np.asarray(y, float))
    ok = np.isfinite(y) & (y > 0)
    slope, se = loglog_slope(x[ok], y[ok]) if ok.sum() >= 2 else (None, None)
    return {"slope": slope, "stderr": se, "points": int(ok.sum()), "left_out": int((~ok).sum())}


def _run_config(cfg: dict, n: int, width: int, seed: int):
    from ..nets import TrainNetConfig

    return TrainNetConfig(data="digits", n_train=n, arch="mlp", width=width, steps=cfg["steps"], lr=cfg["lr"],
                          noise_draws=max(1, round(cfg["points_per_step"] / n)),
                          evals_per_decade=cfg["evals_per_decade"], n_samples=cfg["n_samples"],
                          sample_steps=cfg["sample_steps"], eval_noise=cfg["eval_noise"], n_test=cfg["n_test"],
                          seed=seed)


def _net_run(cfg: dict, n: int, width: int, seed: int) -> dict:
    from ..nets import train_net

    r = train_net(_run_config(cfg, n, width, seed))
    return {"step": np.asarray(r["step"], float), "f_mem": np.asarray(r["f_mem"], float),
            "quality": np.asarray(r["quality"], float), "tau_mem": r["tau_mem"],
            "tau_mem_interval": r["tau_mem_interval"],
            "tau_gen": r["tau_gen"], "tau_gen_interval": r["tau_gen_interval"]}


def rf_timescales(n: int, seed: int, p: int, t: float, n_test: int) -> dict:
    """The random-features model's exact τ_mem and τ_gen (module docstring) on the training and held-out digits
    of the network run with this n and seed (the same split, :func:`rfdm.nets.load_dataset`), features W from
    SeedSequence([seed, p])."""
    from ..diffusion import delta_t
    from ..dynamics import GradientFlow
    from ..features import RandomFeatures, noise_averaged_statistics
    from ..nets import TrainNetConfig, load_dataset
    from ..time_integrated import timescales_from_curves
    from ._rf import tau_grid

    data = load_dataset(TrainNetConfig(data="digits", n_train=n, n_test=n_test, seed=seed))
    train, test = np.asarray(data.train, np.float64), np.asarray(data.test, np.float64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, p]))
    features = RandomFeatures.sample(train.shape[1], p, "tanh", rng)
    held = noise_averaged_statistics(features, test, t)
    flow = GradientFlow(noise_averaged_statistics(features, train, t), overwrite=True)
    flow.add_quadratic_form("test_loss", held.U, held.V, float(delta_t(t)), 1.0)
    tau = tau_grid(flow)
    curves = flow.curves(tau)
    reads = timescales_from_curves(tau, curves["train_loss"], curves["test_loss"])
    gap = curves["generalization_gap"]
    fin = np.isfinite(tau)
    converged = bool(abs(gap[fin][-1] - gap[-1]) <= 1e-6 * max(abs(gap[-1]), 1e-12))
    return {"tau_mem": reads["tau_mem"], "tau_gen": reads["tau_gen"], "gap_inf": float(gap[-1]),
            "converged": converged}


def measure(cfg: dict, seed: int = 0) -> dict:
    """Every network run and RF reading of the setting ``cfg`` (a preset's dict) with seeds seed, seed + 1, …"""
    require_torch()
    ns, widths, seeds = tuple(cfg["ns"]), tuple(cfg["widths"]), [seed + j for j in range(cfg["seeds"])]
    runs = {}
    for s in seeds:
        for n in ns:
            runs[(n, cfg["width"], s)] = _net_run(cfg, n, cfg["width"], s)
        for w in widths:
            if (cfg["n_width"], w, s) not in runs:
                runs[(cfg["n_width"], w, s)] = _net_run(cfg, cfg["n_width"], w, s)
    steps = runs[(ns[0], cfg["width"], seeds[0])]["step"]

    def table(key, n_list, w_list, f):
        return np.array([[f(runs[(n, w, s)][key]) for n, w in zip(n_list, w_list)] for s in seeds], float)

    def num(v):
        return math.nan if v is None else float(v)

    wn = [cfg["width"]] * len(ns)
    nw = [cfg["n_width"]] * len(widths)
    out = {"steps": steps, "n": np.array(ns, float), "widths": np.array(widths, float), "seeds": seeds,
           "f_mem": np.array([[runs[(n, cfg["width"], s)]["f_mem"] for n in ns] for s in seeds]),
           "quality": np.array([[runs[(n, cfg["width"], s)]["quality"] for n in ns] for s in seeds]),
           "tau_mem": table("tau_mem", ns, wn, num), "tau_gen": table("tau_gen", ns, wn, num),
           "tau_mem_mid": table("tau_mem_interval", ns, wn, bracket_middle),
           "tau_gen_mid": table("tau_gen_interval", ns, wn, bracket_middle),
           "tau_mem_lo": table("tau_mem_interval", ns, wn, lambda b: math.nan if b is None else max(b[0], 1)),
           "tau_mem_hi": table("tau_mem_interval", ns, wn, lambda b: math.nan if b is None else b[1]),
           "width_tau_mem_mid": table("tau_mem_interval", nw, widths, bracket_middle),
           "width_tau_gen_mid": table("tau_gen_interval", nw, widths, bracket_middle),
           "width_f_mem_end": table("f_mem", nw, widths, lambda f: f[-1])}
    rf = [[rf_timescales(n, s, cfg["rf_p"], cfg["rf_t"], cfg["n_test"]) for n in ns] for s in seeds]
    out["rf_tau_mem"] = np.array([[num(r["tau_mem"]) for r in row] for row in rf])
    out["rf_tau_gen"] = np.array([[num(r["tau_gen"]) for r in row] for row in rf])
    out["rf_converged"] = all(r["converged"] for row in rf for r in row)
    return out


def _grid_resolution(cfg: dict, span: float) -> float:
    """One evaluation-grid step, log(10^{1/e}), over the range of the fit, log(span)."""
    return math.log(10 ** (1.0 / cfg["evals_per_decade"])) / math.log(span)


def build_claim(m: dict, cfg: dict, setting: dict) -> FigureClaim:
    ns, widths = m["n"], m["widths"]
    S = len(m["seeds"])
    nx = np.tile(ns, (S, 1))
    wx = np.tile(widths, (S, 1))
    fit = {"tau_mem": pooled_slope(nx, m["tau_mem_mid"]), "tau_gen": pooled_slope(nx, m["tau_gen_mid"]),
           "tau_mem_lo": pooled_slope(nx, m["tau_mem_lo"]), "tau_mem_hi": pooled_slope(nx, m["tau_mem_hi"]),
           "width_tau_mem": pooled_slope(wx, m["width_tau_mem_mid"]),
           "width_tau_gen": pooled_slope(wx, m["width_tau_gen_mid"]),
           "rf_tau_mem": pooled_slope(nx, m["rf_tau_mem"]), "rf_tau_gen": pooled_slope(nx, m["rf_tau_gen"])}
    res_n = _grid_resolution(cfg, ns.max() / ns.min())
    res_w = _grid_resolution(cfg, widths.max() / widths.min())
    grid = 10 ** (1.0 / cfg["evals_per_decade"])
    claim = FigureClaim(FIGURE_ID, "τ_gen flat in n, τ_mem ∝ n; τ_gen ∝ 1/W, τ_mem ∝ n/W (real networks)",
                        PUBLISHED_SETTING, setting)
    scale = (f"at this scale (digits, n = {int(ns.min())}–{int(ns.max())}, residual MLP, Adam rather than gradient "
             f"flow, {cfg['steps']} steps, {S} seeds) against U-Nets on CelebA with n up to 32 768 in [B25]; τ is read "
             f"on an evaluation grid of ratio {grid:.3g}, so the smallest n can share a bracket")

    def tol(f, res, what):
        se = f["stderr"]
        a = max(2 * se, res) if se is not None else res
        se_text = f"{se:.3f}" if se is not None else "nan"
        return Tolerance(absolute=a, reason=f"the larger of 2 standard errors of the pooled fit of {what} "
                         f"({f['points']} runs; SE {se_text}: seeds, bracket quantisation, curvature) "
                         f"and one evaluation-grid step over the range ({res:.3f})")

    def left_out(f):
        return (f"; {f['left_out']} run(s) reached no τ within {cfg['steps']} steps and are left out of the fit, which "
                "biases the slope low") if f["left_out"] else ""

    # local slope between the two largest n (per seed, then averaged): how the law bends over the range
    top = np.log(m["tau_mem_mid"][:, -1] / m["tau_mem_mid"][:, -2]) / math.log(ns[-1] / ns[-2])
    top = top[np.isfinite(top)]
    local = float(top.mean()) if top.size else None
    bend = (f"; the local slope between n = {int(ns[-2])} and {int(ns[-1])} is {local:.2f}, so the growth steepens "
            "towards linear at the largest n" if local is not None and fit["tau_mem"]["slope"] is not None
            and local > fit["tau_mem"]["slope"] + 0.1 else "")
    f = fit["tau_mem"]
    claim.add(Check("slope of log τ_mem against log n (network)", 1.0, "[B25] §2, Fig. 2 (τ_mem ∝ n)", f["slope"],
                    tol(f, res_n, "log τ_mem"), converged=f["stderr"] is not None,
                    difference_reason=f"τ_mem grows sub-linearly with n {scale}{bend}{left_out(f)}; the "
                    "random-features "
                    f"model's exact τ_mem on the same digits has slope {_fmt(fit['rf_tau_mem']['slope'])} (row below)",
                    note="" if f["stderr"] is not None else "fewer than 3 runs memorized: no slope error."))
    f = fit["tau_gen"]
    claim.add(Check("slope of log τ_gen against log n (network)", 0.0, "[B25] §2, Fig. 2 (τ_gen flat in n)", f["slope"],
                    tol(f, res_n, "log τ_gen"), converged=f["stderr"] is not None,
                    difference_reason=f"τ_gen grows with n at this scale, and so does the random-features model's "
                    f"exact τ_gen on the same digits (slope {_fmt(fit['rf_tau_gen']['slope'])}, row below): with n ≤ "
                    f"{int(ns.max())} points the best reachable quality still improves with n, which moves the "
                    f"10 %-of-the-way point of the FID later; {scale}{left_out(f)}"))
    f = fit["width_tau_mem"]
    claim.add(Check(f"slope of log τ_mem against log W at n = {cfg['n_width']} (network)", -1.0,
                    "[B25] §2 (τ_mem ∝ n/W)", f["slope"], tol(f, res_w, "log τ_mem against log W"),
                    converged=f["stderr"] is not None,
                    difference_reason=f"only {len(widths)} widths over a factor {widths.max() / widths.min():g}, "
                    f"{scale}{left_out(f)}"))
    f = fit["width_tau_gen"]
    claim.add(Check(f"slope of log τ_gen against log W at n = {cfg['n_width']} (network)", -1.0,
                    "[B25] §2 (τ_gen ∝ 1/W)", f["slope"], tol(f, res_w, "log τ_gen against log W"),
                    converged=f["stderr"] is not None,
                    difference_reason=f"only {len(widths)} widths over a factor {widths.max() / widths.min():g}; "
                    f"τ_gen of the digits FID moves by few grid steps, {scale}{left_out(f)}"))
    for key, label in (("rf_tau_mem", "τ_mem"), ("rf_tau_gen", "τ_gen")):
        f = fit[key]
        claim.add(Check(f"slope of log {label} against log n, random features (exact flow, t = {cfg['rf_t']:g}, "
                        f"p = {cfg['rf_p']}, tanh, same digits)", None, "", f["slope"],
                        converged=m["rf_converged"] and f["slope"] is not None,
                        note=f"standard error {_fmt(f['stderr'])} over {f['points']} (n, seed) points"))
    a, b = fit["tau_mem"], fit["rf_tau_mem"]
    if a["stderr"] is not None and b["stderr"] is not None:
        comb = math.hypot(a["stderr"], b["stderr"])
        claim.add(internal_disagreement(
            "slope of τ_mem in n", ("network", a["slope"]), ("random features, exact", b["slope"]),
            Tolerance(absolute=max(2 * comb, res_n),
                      reason=f"2 combined standard errors ({comb:.3f}) or one grid step"),
            explanation="the network's τ_mem is read off f_mem of generated samples (a threshold on a grid of steps, "
            "Adam), the random-features τ_mem is the half-gap time of the exact per-time flow at one t; the two "
            "models and readings differ, so only the trends are expected to agree"))
    if local is not None:
        claim.add(Check(f"local slope of log τ_mem between n = {int(ns[-2])} and {int(ns[-1])} (network, mean over "
                        "seeds)", None, "", local,
                        note=f"standard error {top.std(ddof=1) / math.sqrt(top.size):.3f}" if top.size > 1 else ""))
    for key, label in (("tau_mem_lo", "lower"), ("tau_mem_hi", "upper")):
        claim.add(Check(f"slope of log τ_mem against log n through the {label} bracket ends", None, "",
                        fit[key]["slope"],
                        note=f"standard error {_fmt(fit[key]['stderr'])}"))
    for k, n in enumerate(ns):
        done = int(np.isfinite(m["tau_mem_mid"][:, k]).sum())
        final = f"final f_mem {np.round(m['f_mem'][:, k, -1], 3).tolist()}"
        if done:
            claim.add(Check(f"τ_mem at n = {int(n)} (steps, geometric middle of the bracket, mean over the seeds "
                            "that memorized)", None, "", _nanmean(m["tau_mem_mid"][:, k]),
                            note=f"{done} of {S} seeds memorized; {final}"))
        else:
            claim.add(Check(f"seeds without memorization (f_mem ≤ {cfg.get('mem_level', 0.02):g}) within "
                            f"{cfg['steps']} steps at n = {int(n)}", None, "", float(S - done), note=final))
    m["fit"] = fit
    return claim


def _nanmean(x):
    x = np.asarray(x, float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else None


def _fmt(x):
    return "—" if x is None else f"{x:.3f}"


def compute(preset: str = "quick", seed: int = 0) -> dict:
    check_preset(preset)
    require_torch()
    return compute_setting(PRESETS[preset], seed, preset)


def compute_setting(cfg: dict, seed: int = 0, preset: str = "custom") -> dict:
    """compute() for an explicit setting (a dict with the keys of a preset; tests use a small one)."""
    t0 = time.perf_counter()
    m = measure(cfg, seed)
    setting = {"network": f"residual MLP (depth 2, width {cfg['width']})", "data": "scikit-learn digits 8x8, "
               "standardized", **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
               "optimizer": "adam, full batch", "preset": preset, "seed": seed}
    claim = build_claim(m, cfg, setting)
    m.update(claim=claim, setting=setting, config=dict(cfg), seconds=time.perf_counter() - t0)
    return m


def _ticks(ax, values, axis="x"):
    from matplotlib.ticker import FixedLocator, NullLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(list(values)))
    target.set_minor_locator(NullLocator())
    target.set_major_formatter(lambda v, _: f"{v:g}")


def plot(result: dict, fig) -> None:
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, 4)
    steps = np.asarray(result["steps"], float)
    ns = np.asarray(result["n"], float)
    x = np.maximum(steps, 0.5)
    for k, n in enumerate(ns):
        axes[0].plot(x, np.mean(result["f_mem"][:, k], axis=0), color=f"C{k}", label=f"n = {int(n)}")
        axes[1].plot(x, np.exp(np.mean(np.log(result["quality"][:, k]), axis=0)), color=f"C{k}")
    axes[0].set(xscale="log", xlabel="step", ylabel="f_mem (mean over seeds)")
    axes[1].set(xscale="log", yscale="log", xlabel="step", ylabel="digits FID (geometric mean)")
    axes[0].legend(fontsize=7)
    fit = result["fit"]
    ax = axes[2]
    for key, mk, lab in (("tau_mem_mid", "o", "τ_mem"), ("tau_gen_mid", "s", "τ_gen")):
        y = result[key]
        for s in range(y.shape[0]):
            ax.plot(ns, y[s], mk, color="C0" if key == "tau_mem_mid" else "C1", alpha=0.6,
                    label=lab if s == 0 else None)
    f = fit["tau_mem"]
    if f["slope"] is not None:
        ok = np.isfinite(result["tau_mem_mid"])
        c = np.exp(np.mean(np.log(result["tau_mem_mid"][ok]) - f["slope"] * np.log(np.tile(ns, (ok.shape[0], 1))[ok])))
        ax.plot(ns, c * ns ** f["slope"], "-", color="C0", label=f"fit n^{f['slope']:.2f}±{_fmt(f['stderr'])}")
        ax.plot(ns, c * ns[0] ** f["slope"] * ns / ns[0], ":", color="k", label="∝ n")
    rf = result["rf_tau_mem"]
    both = np.isfinite(rf).any(axis=0) & np.isfinite(result["tau_mem_mid"]).any(axis=0)
    if both.any():
        g = np.array([np.exp(np.nanmean(np.log(c))) if np.isfinite(c).any() else np.nan for c in rf.T])
        ref = np.array([np.exp(np.nanmean(np.log(c))) if np.isfinite(c).any() else np.nan
                        for c in np.asarray(result["tau_mem_mid"]).T])
        scale = np.exp(np.mean(np.log(ref[both]) - np.log(g[both])))
        ax.plot(ns, g * scale, "d--", color="C3",
                label=f"RF exact τ_mem (rescaled), n^{_fmt(fit['rf_tau_mem']['slope'])}")
    ax.set(xscale="log", yscale="log", xlabel="n", ylabel="τ (steps)")
    _ticks(ax, ns)
    ax.legend(fontsize=6)
    ax = axes[3]
    w = np.asarray(result["widths"], float)
    for key, mk, lab in (("width_tau_mem_mid", "o", "τ_mem"), ("width_tau_gen_mid", "s", "τ_gen")):
        y = result[key]
        for s in range(y.shape[0]):
            ax.plot(w, y[s], mk, color="C0" if "mem" in key else "C1", alpha=0.6, label=lab if s == 0 else None)
    ax.set(xscale="log", yscale="log", xlabel="width W", ylabel=f"τ (steps), n = {result['config']['n_width']}")
    _ticks(ax, w)
    ax.set_title(f"τ_mem ∝ W^{_fmt(fit['width_tau_mem']['slope'])}, τ_gen ∝ W^{_fmt(fit['width_tau_gen']['slope'])}",
                 fontsize=8)
    ax.legend(fontsize=7)
    fig.suptitle(f"[B25] §2 on digits (residual MLP): {result['claim'].verdict}", fontsize=10)
