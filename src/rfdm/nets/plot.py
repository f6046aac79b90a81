"""Plots of a network training run (no torch needed): draw on the matplotlib Figure given, never select a
backend."""

from __future__ import annotations

import numpy as np


def plot_training(result: dict, fig) -> None:
    """Left: train and held-out DSM loss against the step; middle: f_mem with its Clopper-Pearson interval and
    the level that defines tau_mem; right: the quality (digits FID or energy distance) with tau_gen marked."""
    steps = np.asarray(result["step"], dtype=float)
    x = np.maximum(steps, 0.5)  # step 0 on a log axis
    cfg = result["config"]
    fig.set_size_inches(13, 4)
    ax_loss, ax_mem, ax_q = fig.subplots(1, 3)
    ax_loss.plot(x, result["train_loss"], "o-", ms=3, label="train")
    ax_loss.plot(x, result["test_loss"], "s--", ms=3, label="held out")
    ax_loss.set_ylabel("DSM loss")
    ax_loss.legend(fontsize=8)
    ci = np.asarray(result["f_mem_ci"], dtype=float)
    ax_mem.plot(x, result["f_mem"], "o-", ms=3, color="C3")
    ax_mem.fill_between(x, ci[:, 0], ci[:, 1], color="C3", alpha=0.2, label="Clopper-Pearson interval")
    ax_mem.axhline(cfg["mem_level"], color="0.4", ls=":", lw=1, label=f"level {cfg['mem_level']:g}")
    ax_mem.set_ylabel(r"$f_{mem}$")
    ax_mem.set_ylim(-0.02, 1.02)
    ax_mem.legend(fontsize=8)
    ax_q.plot(x, result["quality"], "o-", ms=3, color="C2")
    ax_q.set_ylabel(str(result.get("quality_metric", "quality")))
    ax_q.set_yscale("log" if np.all(np.asarray(result["quality"], dtype=float) > 0) else "linear")
    for ax in (ax_loss, ax_mem, ax_q):
        ax.set_xscale("log")
        ax.set_xlabel("step")
        for key, color in (("tau_mem", "C3"), ("tau_gen", "C2")):
            v = result.get(key)
            if isinstance(v, (int, float)) and v > 0:
                ax.axvline(v, color=color, ls="--", lw=1)
    fig.suptitle(f"{cfg['arch']} width {cfg['width']} on {cfg['data']}, n_train = {cfg['n_train']}, "
                 f"{cfg['optimizer']} lr {cfg['lr']:g} (dashed: tau_mem red, tau_gen green)", fontsize=9)
    fig.tight_layout()
