"""Training a score network by DSM and measuring it along training: :func:`train_net`.

One step: draw a minibatch (all points when full batch; each repeated ``noise_draws`` times), t ~ Q per
point (u ~ U(0, 1) from the run's torch generator mapped by :func:`rfdm.time_integrated.time_law_quantile`),
xi ~ N(0, I); the loss is the mean over
the batch of (1/d)|N(x_t, t) + xi|^2 (:class:`rfdm.nets.models.ScoreNetwork`); one Adam or SGD update.

At the evaluation steps (:func:`rfdm.nets.config.evaluation_steps`) the run records, in float64:

* ``train_loss`` / ``test_loss``: the DSM loss on the training points and on (up to n_test) held-out points,
  each with ``eval_noise`` fixed draws (t, xi) per point, drawn once from the seed (the same draws at every
  step, so the curves are not blurred by fresh noise);
* ``f_mem`` with its Clopper–Pearson interval ``f_mem_ci``: ``n_samples`` samples of the reverse SDE
  (rfdm.sampling.sample: Euler–Maruyama on the log-SNR grid from T = t_max to t_min, ``sample_steps`` steps,
  the same sampler seed at every evaluation) followed by the final denoising step
  x_0 = e^{t_min}(x + Delta_{t_min} S(x, t_min)) (Tweedie's posterior mean), counted as memorized when the
  nearest over second-nearest training distance is below ``threshold`` (1/3);
* ``quality``: on digits the Fréchet distance between the features of a small classifier
  (:class:`rfdm.nets.metrics.DigitsFeatures`) of the samples and of the held-out points (a "digits FID");
  on other data the energy distance to the held-out points (``quality_metric`` says which);
* ``energy_distance`` to the held-out points (always).

Read-offs: tau_gen (quality within ``gen_margin`` of its best on a log scale, rfdm.nets.metrics.tau_gen) and
tau_mem (first step with f_mem > ``mem_level``; ``tau_mem_confident``: first step whose lower Clopper–Pearson
bound is above it), each with the bracketing evaluation steps.  ``tau`` = step x lr, the
gradient-flow time of the loss for full-batch gradient descent (optimizer sgd, batch >= n_train): the units of
the theory's dA/dtau = -grad L; for Adam or minibatches it is a nominal time (``tau_exact`` says which).

Checkpoints (``out`` given): after each evaluation (or every ``checkpoint_every`` steps) the step, the model
and optimizer states, the torch generator state and the measurements so far are written to
``out/checkpoint.pt`` atomically (a temporary file, fsync, os.replace); a run started again with the same
configuration and ``out`` resumes from it (on the same device) and gives the same numbers as an uninterrupted
run (the evaluation draws are re-derived from the seed).  The result is written to ``out/result.json`` (atomically).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import InvalidParameterError, NumericalError
from ..metrics import energy_distance
from ..sampling import sample
from ..time_integrated import time_law_quantile
from .config import TrainNetConfig, evaluation_steps
from .data import STREAM_EVAL, STREAM_INIT, STREAM_SAMPLER, STREAM_TRAIN, NetData, load_dataset, stream
from .metrics import DigitsFeatures, memorization, tau_gen, tau_mem
from .models import NetworkScore, ScoreNetwork, build_network

log = logging.getLogger("rfdm.nets")

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


def _seed_int(seed: int, tag: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(tag,)).generate_state(1, dtype=np.uint64)[0] >> 1)


def init_network(config: TrainNetConfig, shape: tuple, device) -> ScoreNetwork:
    """The network of a run, initialised from the run's seed (torch's global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_int(config.seed, STREAM_INIT))
        model = build_network(config.arch, shape, config.width, config.depth)
    return model.to(device)


class DSMEvaluator:
    """The DSM loss of a model on fixed points with fixed draws: ``m`` draws (t ~ Q, xi) per point from
    ``rng``; ``loss(model)`` is their mean of (1/d)|N(x_t, t) + xi|^2, accumulated in float64."""

    def __init__(self, points: np.ndarray, m: int, config: TrainNetConfig, rng: np.random.Generator, device,
                 batch: int = 4096):
        x0 = np.repeat(points, m, axis=0)
        t = time_law_quantile(rng.random(len(x0)), config.t_min, config.t_max, config.t_law)
        xi = rng.standard_normal(x0.shape)
        self.x0 = torch.as_tensor(x0, dtype=torch.float32, device=device)
        self.t = torch.as_tensor(t, dtype=torch.float32, device=device)
        self.xi = torch.as_tensor(xi, dtype=torch.float32, device=device)
        self.batch = batch

    def loss(self, model: ScoreNetwork) -> float:
        total = 0.0
        with torch.no_grad():
            for a in range(0, len(self.x0), self.batch):
                sl = slice(a, a + self.batch)
                total += float(model.dsm_losses(self.x0[sl], self.t[sl], self.xi[sl]).to(torch.float64).sum())
        out = total / len(self.x0)
        if not math.isfinite(out):
            raise NumericalError("the DSM loss is not finite: training diverged (lower the learning rate).")
        return out


def sample_network(model: ScoreNetwork, n_samples: int, *, t_min: float = 0.01, t_max: float = 3.0,
                   steps: int = 100, seed=0, denoise: bool = True) -> np.ndarray:
    """``n_samples`` samples (n, d) float64 of the reverse SDE with the network's score S = N/sqrt(Delta_t)
    (rfdm.sampling.sample: Euler–Maruyama on the log-SNR grid from T = t_max down to t_min, ``steps`` steps,
    on the model's device), then the final denoising step x_0 = e^{t_min}(x + Delta_{t_min} S(x, t_min))
    (Tweedie's posterior mean at t_min)."""
    source = NetworkScore(model)
    dev = source.device
    res = sample(source, n_samples, T=t_max, t_min=t_min, steps=steps, grid="log-snr", integrator="euler",
                 seed=seed, device=None if dev.type == "cpu" else str(dev))
    x = res.samples
    if denoise:
        x = math.exp(t_min) * (x - math.expm1(-2 * t_min) * source.score(x, t_min))
    if not np.all(np.isfinite(x)):
        raise NumericalError("the generated samples are not finite (the network's score diverged).")
    return x


def generate(model: ScoreNetwork, n_samples: int, config: TrainNetConfig, seed: int) -> np.ndarray:
    """:func:`sample_network` with the time window and steps of a run's configuration."""
    return sample_network(model, n_samples, t_min=config.t_min, t_max=config.t_max, steps=config.sample_steps,
                          seed=seed)


def _atomic_write_bytes(path: Path, write: Callable) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    _atomic_write_bytes(Path(path), lambda fh: fh.write(json.dumps(obj, indent=1).encode()))


class _Run:
    """The state of one run: data, model, optimizer, generator, evaluators and the measurements."""

    def __init__(self, config: TrainNetConfig):
        self.config = config
        self.data: NetData = load_dataset(config)
        self.device = torch.device(config.device)
        self.model = init_network(config, self.data.shape, self.device)
        opt = torch.optim.Adam if config.optimizer == "adam" else torch.optim.SGD
        self.opt = opt(self.model.parameters(), lr=config.lr)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(_seed_int(config.seed, STREAM_TRAIN))
        self.x_train = torch.as_tensor(self.data.train, dtype=torch.float32, device=self.device)
        rng = stream(config.seed, STREAM_EVAL)
        self.eval_train = DSMEvaluator(self.data.train, config.eval_noise, config, rng, self.device)
        self.eval_test = DSMEvaluator(self.data.test, config.eval_noise, config, rng, self.device)
        self.sampler_seed = _seed_int(config.seed, STREAM_SAMPLER)
        if config.data == "digits":
            self.features = DigitsFeatures(upsample=config.upsample)
            self.quality_metric = "digits-fid"
        else:
            self.features = None
            self.quality_metric = "energy-distance"
        self.step = 0
        self.history = {k: [] for k in ("step", "train_loss", "test_loss", "f_mem", "f_mem_ci", "n_memorized",
                                        "quality", "energy_distance", "seconds")}
        self.seconds = 0.0

    # -- one update ---------------------------------------------------------------------------------------
    def update(self) -> float | None:
        c, n = self.config, self.config.n_train
        if c.full_batch:
            x0 = self.x_train
        else:
            idx = torch.randperm(n, generator=self.gen, device=self.device)[:c.batch]
            x0 = self.x_train[idx]
        if c.noise_draws > 1:
            x0 = x0.repeat(c.noise_draws, *([1] * (x0.dim() - 1)))
        B = x0.shape[0]
        u = torch.rand(B, generator=self.gen, device=self.device)
        t = time_law_quantile(u, c.t_min, c.t_max, c.t_law)
        xi = torch.randn(x0.shape, generator=self.gen, device=self.device)
        loss = self.model.dsm_losses(x0, t, xi).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        # the loss is read back (a device sync) only every 100 steps, to catch divergence
        return float(loss.detach()) if self.step % 100 == 0 else None

    # -- measurements ---------------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        c = self.config
        rec = {"step": self.step, "train_loss": self.eval_train.loss(self.model),
               "test_loss": self.eval_test.loss(self.model)}
        x = generate(self.model, c.n_samples, c, self.sampler_seed)
        train_flat, test_flat = self.data.flat(self.data.train), self.data.flat(self.data.test)
        mem = memorization(x, train_flat, c.threshold, c.confidence)
        rec.update(f_mem=mem["f_mem"], f_mem_ci=mem["f_mem_ci"], n_memorized=mem["n_memorized"])
        rec["energy_distance"] = energy_distance(x, test_flat)
        rec["quality"] = self.features.fid(x, test_flat) if self.features is not None else rec["energy_distance"]
        rec["seconds"] = self.seconds
        for k, v in rec.items():
            self.history[k].append(v)
        log.info("step %d: train %.4f test %.4f f_mem %.3f [%.3f, %.3f] quality %.4g", self.step,
                 rec["train_loss"], rec["test_loss"], rec["f_mem"], *rec["f_mem_ci"], rec["quality"])
        return rec

    # -- checkpoints ------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"key": self.config.key(), "step": self.step, "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "generator": self.gen.get_state(), "history": self.history,
                "seconds": self.seconds}

    def save(self, path: Path) -> None:
        state = self.state()
        _atomic_write_bytes(path, lambda fh: torch.save(state, fh))

    def load(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get("key") != self.config.key():
            raise InvalidParameterError(f"the checkpoint {path} belongs to another configuration; use another "
                                        "output directory or delete it.")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"].cpu() if hasattr(state["generator"], "cpu") else state["generator"])
        self.step, self.history, self.seconds = int(state["step"]), state["history"], float(state["seconds"])

    # -- the result ---------------------------------------------------------------------------------------
    def result(self) -> dict:
        c, h = self.config, self.history
        steps = h["step"]
        tg, tg_int, tg_scale = tau_gen(steps, h["quality"], c.gen_margin)
        tm, tm_int = tau_mem(steps, h["f_mem"], c.mem_level)
        tm_conf, tm_conf_int = tau_mem(steps, [ci[0] for ci in h["f_mem_ci"]], c.mem_level)
        exact = c.optimizer == "sgd" and c.full_batch
        scale = lambda s: None if s is None else s * c.lr  # noqa: E731
        out = {
            "step": list(steps), "tau": [s * c.lr for s in steps],
            "train_loss": h["train_loss"], "test_loss": h["test_loss"],
            "generalization_gap": [a - b for a, b in zip(h["test_loss"], h["train_loss"])],
            "f_mem": h["f_mem"], "f_mem_ci": h["f_mem_ci"], "n_memorized": h["n_memorized"],
            "quality": h["quality"], "quality_metric": self.quality_metric, "energy_distance": h["energy_distance"],
            "tau_gen": tg, "tau_gen_interval": tg_int, "tau_mem": tm, "tau_mem_interval": tm_int,
            "tau_mem_confident": tm_conf, "tau_mem_confident_interval": tm_conf_int,
            "tau_gen_tau": scale(tg), "tau_mem_tau": scale(tm),
            "tau_gen_tau_interval": None if tg_int is None else [scale(s) for s in tg_int],
            "tau_mem_tau_interval": None if tm_int is None else [scale(s) for s in tm_int],
            "tau_exact": exact,
            "tau_units": ("tau = step x lr: gradient-flow time of the DSM loss (full-batch gradient descent)" if exact
                          else "tau = step x lr: nominal (Adam or minibatches are not gradient flow)"),
            "definitions": {
                "tau_gen": (f"first evaluated step with log quality <= log best + {c.gen_margin:g} (log first - log "
                            "best)" if tg_scale == "log" else
                            f"first evaluated step with quality <= best + {c.gen_margin:g} (first - best)"),
                "tau_mem": f"first evaluated step with f_mem > {c.mem_level:g}",
                "tau_mem_confident": f"first evaluated step whose lower Clopper-Pearson bound of f_mem is > "
                                     f"{c.mem_level:g}",
                "interval": "[previous evaluated step, that step]",
                "f_mem": f"d_1/d_2 < {c.threshold:.4g} after the final denoising step; Clopper-Pearson "
                         f"{c.confidence:g} interval",
                "quality": ("Frechet distance of classifier features (digits FID) to held-out points"
                            if self.features is not None else
                            "energy distance to held-out points (no classifier for this data)")},
            "n_train": c.n_train, "n_test": int(len(self.data.test)), "d": self.data.d,
            "shape": list(self.data.shape), "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "network_dtype": "float32", "metric_dtype": "float64", "device": str(self.device),
            "train_seconds": self.seconds, "data_info": _jsonable(self.data.info),
            "config": c.to_dict(),
        }
        if self.features is not None:
            out["classifier_accuracy"] = self.features.accuracy
        return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def train_net(config, out=None, *, on_checkpoint: Callable[[int], None] | None = None,
              return_model: bool = False):
    """Train a score network as ``config`` (a :class:`TrainNetConfig` or a dict of its fields) says and
    measure it along training (module docstring).  With ``out`` (a directory) the run checkpoints there,
    resumes from a checkpoint of the same configuration, and writes ``result.json``.  ``on_checkpoint(step)``
    is called after each checkpoint is on disk (tests use it to abort a run).  Returns the result dict (keys
    step, tau, train_loss, test_loss, f_mem, f_mem_ci, quality, tau_gen, tau_mem, config and more), and the
    trained model too when ``return_model``."""
    if isinstance(config, dict):
        config = TrainNetConfig.from_dict(config)
    if not isinstance(config, TrainNetConfig):
        raise InvalidParameterError("config must be a TrainNetConfig or a dict of its fields.")
    run = _Run(config)
    out = Path(out) if out is not None else None
    ckpt = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        ckpt = out / CHECKPOINT
        if ckpt.exists():
            run.load(ckpt)
            log.info("resumed from %s at step %d", ckpt, run.step)
    evals = evaluation_steps(config)
    eval_set = set(evals)
    ckpt_set = eval_set if config.checkpoint_every is None else (
        set(range(0, config.steps + 1, config.checkpoint_every)) | {config.steps})
    done = set(run.history["step"])
    while True:
        s = run.step
        if s in eval_set and s not in done:
            run.evaluate()
            done.add(s)
            if ckpt is not None and s in ckpt_set:
                run.save(ckpt)
                if on_checkpoint is not None:
                    on_checkpoint(s)
        elif ckpt is not None and s in ckpt_set and s not in eval_set and s > 0:
            run.save(ckpt)
            if on_checkpoint is not None:
                on_checkpoint(s)
        if s >= config.steps:
            break
        t0 = time.perf_counter()
        loss = run.update()
        run.seconds += time.perf_counter() - t0
        if loss is not None and not math.isfinite(loss):
            raise NumericalError(f"the training loss became non-finite at step {run.step}: lower the learning rate.")
    result = run.result()
    if out is not None:
        write_json(out / RESULT, result)
    return (result, run.model) if return_model else result
