"""The ``train-net`` experiment as a sweep kind: one point is one :func:`rfdm.nets.train_net` run of its declared
configuration (:class:`rfdm.nets.TrainNetConfig`), so a sweep over n_train and width maps the (n, W) plane of
[B25] §2 (docs/nets.md).  The `rfdm train-net` command itself is hand-written (rfdm.cli.nets); this registration
adds the sweep kind only (``command=False``).  torch is imported when a point is computed, never at import.

Sweep outputs are scalars: τ_mem and τ_gen in steps with their brackets [previous evaluated step, step] (NaN when
not reached within the run), the confident τ_mem (lower Clopper–Pearson bound above the level), τ_mem in
τ = step × lr, the final f_mem, train and held-out DSM losses, the best and the final quality (digits FID or
energy distance) and the energy distance at the end.
"""

from __future__ import annotations

import math

from ..errors import InvalidParameterError
from ..nets.config import TrainNetConfig
from ..protocol import register


def compute(config: TrainNetConfig) -> dict:
    """train_net(config): the run's result dict (docs/nets.md)."""
    try:
        from ..nets.train import train_net
    except ImportError as exc:
        raise InvalidParameterError(f"the train-net sweep kind needs PyTorch ({exc.name} is not installed): "
                                    "pip install 'rfdm[nets]'.") from None
    return train_net(config)


def _num(x) -> float:
    return math.nan if x is None else float(x)


def _bracket(interval, k: int) -> float:
    return math.nan if interval is None else float(interval[k])


def sweep_outputs(result: dict, config: TrainNetConfig) -> dict:
    """Scalars of one run (module docstring); ``info`` holds the resolved configuration and the definitions."""
    quality = [q for q in result["quality"] if q is not None and math.isfinite(q)]
    scalars = {
        "tau_mem": _num(result["tau_mem"]),
        "tau_mem_lo": _bracket(result["tau_mem_interval"], 0), "tau_mem_hi": _bracket(result["tau_mem_interval"], 1),
        "tau_mem_confident": _num(result["tau_mem_confident"]),
        "tau_mem_tau": _num(result["tau_mem_tau"]),
        "tau_gen": _num(result["tau_gen"]),
        "tau_gen_lo": _bracket(result["tau_gen_interval"], 0), "tau_gen_hi": _bracket(result["tau_gen_interval"], 1),
        "f_mem_final": float(result["f_mem"][-1]),
        "train_loss_final": float(result["train_loss"][-1]), "test_loss_final": float(result["test_loss"][-1]),
        "quality_best": min(quality) if quality else math.nan,
        "quality_final": _num(result["quality"][-1]),
        "energy_distance_final": _num(result["energy_distance"][-1]),
    }
    return {"scalars": scalars, "vectors": {}, "coords": {},
            "info": {"config": result["config"], "quality_metric": result["quality_metric"],
                     "definitions": result["definitions"], "tau_units": result["tau_units"],
                     "steps_evaluated": result["step"]}}


EXPERIMENT = register(
    "train-net", TrainNetConfig, compute, sweep=sweep_outputs, command=False,
    sweep_params=("data", "n_train", "arch", "width", "depth", "steps", "lr", "optimizer", "noise_draws",
                  "evals_per_decade", "n_samples", "sample_steps", "eval_noise", "n_test", "t_law", "t_min", "t_max",
                  "dim", "m_norm", "mem_level", "gen_margin", "threshold"),
    description="a PyTorch score network trained by DSM, f_mem and quality along training (rfdm train-net)",
    descriptions={
        "tau_mem": "first evaluated step with f_mem > mem_level (NaN: not within the run)",
        "tau_mem_lo": "previous evaluated step before tau_mem (bracket lower end)",
        "tau_mem_hi": "tau_mem (bracket upper end)",
        "tau_mem_confident": "first evaluated step whose lower Clopper-Pearson bound of f_mem is > mem_level",
        "tau_mem_tau": "tau_mem in tau = step x lr",
        "tau_gen": "first evaluated step whose quality is within gen_margin of its best (log scale)",
        "tau_gen_lo": "previous evaluated step before tau_gen (bracket lower end)",
        "tau_gen_hi": "tau_gen (bracket upper end)",
        "f_mem_final": "f_mem of the generated samples at the last step",
        "train_loss_final": "training DSM loss at the last step (fixed evaluation noise)",
        "test_loss_final": "held-out DSM loss at the last step (fixed evaluation noise)",
        "quality_best": "best (lowest) quality along training: digits FID, else energy distance",
        "quality_final": "quality at the last step",
        "energy_distance_final": "energy distance of the samples to the held-out points at the last step"})
