"""The typed configuration of a network training run (:class:`TrainNetConfig`), validated without torch.

Field names are the options of ``rfdm train-net`` (issue 14): ``data`` (digits | gaussian | mixture |
FILE.npy), ``n_train``, ``arch`` (mlp | unet), ``width``, ``steps``, ``lr``, ``batch``, ``eval_every``,
``n_samples``, ``seed``, ``device``, plus the training and measurement options documented on each field.
Every bad value raises :class:`rfdm.errors.InvalidParameterError` with one sentence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass

from ..errors import InvalidParameterError, check_positive_float, check_positive_int
from ..time_integrated import TIME_LAWS, check_time_window

ARCHS = ("mlp", "unet")
BUILTIN_DATA = ("digits", "gaussian", "mixture")
OPTIMIZERS = ("adam", "sgd")
DEVICES = "cpu, cuda or cuda:N"


@dataclass(frozen=True)
class TrainNetConfig:
    """One training run of a score network by denoising score matching (DSM) on the OU process.

    data: "digits" (scikit-learn's 8x8 digits), "gaussian" (N(0, I_dim)), "mixture" (two clusters +-m,
        |m| = m_norm, sigma_x = 1) or the path of a .npy file ((n, d) vectors or (n, H, W[, C]) images, C <= 3).
    n_train: training points (the rest, up to n_test, is the held-out set).
    arch: "mlp" (residual MLP on flattened vectors) or "unet" (images only).
    width: hidden width of the MLP, base channel width W of the U-Net.
    depth: residual blocks of the MLP (U-Net: blocks per resolution).
    steps: optimizer steps; lr: learning rate; optimizer: "adam" or "sgd" (plain gradient descent).
    batch: minibatch size (None or >= n_train: full batch).
    noise_draws: fresh (t, xi) draws per point and step (default 4: the gradient is averaged over 4 noisings
        of each point, which lowers the gradient noise that otherwise holds memorization back; 1 is plain DSM).
    eval_every: None -> evaluate at log-spaced steps (``evals_per_decade`` per decade, plus 0 and ``steps``);
        an integer k -> at every k-th step (plus 0 and ``steps``).
    n_samples: generated samples per evaluation (f_mem, quality, energy distance).
    seed: every random draw (split, synthetic data, initialisation, training noise, evaluation noise,
        sampler) derives from it.
    device: "cpu", "cuda" or "cuda:N" (one code path; the network is float32, every metric float64).
    t_law, t_min, t_max: the law Q of the diffusion time in the loss (rfdm.time_integrated: uniform or
        log-uniform on [t_min, t_max]); the sampler runs from T = t_max down to t_min.
    eval_noise: fixed noise draws (t, xi) per point for the train/held-out loss.
    sample_steps: steps of the reverse SDE; threshold: f_mem counts d_1/d_2 < threshold.
    mem_level: tau_mem = first evaluated step with f_mem > mem_level (default 2 %).
    gen_margin: tau_gen = first evaluated step with log quality <= log best + gen_margin (log first - log best)
        (linear in quality if some value is <= 0).
    """

    data: str = "digits"
    n_train: int = 64
    arch: str = "mlp"
    width: int = 128
    depth: int = 2
    steps: int = 2500
    lr: float = 6e-3
    optimizer: str = "adam"
    batch: int | None = None
    noise_draws: int = 4
    eval_every: int | None = None
    evals_per_decade: int = 6
    n_samples: int = 256
    seed: int = 0
    device: str = "cpu"
    t_law: str = "log-uniform"
    t_min: float = 0.01
    t_max: float = 3.0
    n_test: int = 512
    dim: int = 16
    m_norm: float = 4.0
    upsample: int = 1
    eval_noise: int = 4
    sample_steps: int = 100
    threshold: float = 1.0 / 3.0
    mem_level: float = 0.02
    gen_margin: float = 0.1
    checkpoint_every: int | None = None
    confidence: float = 0.95

    def __post_init__(self):
        s = object.__setattr__
        if not isinstance(self.data, (str, os.PathLike)):
            raise InvalidParameterError(f"data must be digits, gaussian, mixture or a .npy file, got {self.data!r}.")
        data = os.fspath(self.data)
        if data not in BUILTIN_DATA:
            if not data.endswith(".npy"):
                raise InvalidParameterError(f"data must be digits, gaussian, mixture or a .npy file, got {data!r}.")
            if not os.path.isfile(data):
                raise InvalidParameterError(f"the dataset file {data} does not exist.")
        s(self, "data", data)
        if self.arch not in ARCHS:
            raise InvalidParameterError(f"unknown architecture {self.arch!r}; choose mlp or unet.")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidParameterError(f"unknown optimizer {self.optimizer!r}; choose adam or sgd.")
        if self.t_law not in TIME_LAWS:
            raise InvalidParameterError(f"the time law must be one of {', '.join(TIME_LAWS)}, got {self.t_law!r}.")
        for name in ("n_train", "width", "depth", "steps", "evals_per_decade", "n_samples", "n_test", "dim",
                     "upsample", "eval_noise", "sample_steps", "noise_draws"):
            s(self, name, check_positive_int(name, getattr(self, name)))
        if self.n_train < 2:
            raise InvalidParameterError(f"n_train must be at least 2 (f_mem needs two nearest neighbours), got "
                                        f"{self.n_train}.")
        for name in ("batch", "eval_every", "checkpoint_every"):
            if getattr(self, name) is not None:
                s(self, name, check_positive_int(name, getattr(self, name)))
        s(self, "lr", check_positive_float("lr", self.lr))
        t_min, t_max = check_time_window(self.t_min, self.t_max)
        s(self, "t_min", t_min)
        s(self, "t_max", t_max)
        s(self, "m_norm", check_positive_float("m_norm", self.m_norm, allow_zero=True))
        s(self, "threshold", check_positive_float("threshold", self.threshold))
        for name in ("mem_level", "gen_margin", "confidence"):
            v = check_positive_float(name, getattr(self, name))
            if v >= 1:
                raise InvalidParameterError(f"{name} must be in (0, 1), got {v:g}.")
            s(self, name, v)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidParameterError(f"seed must be a non-negative integer, got {self.seed!r}.")
        s(self, "device", check_device(self.device))

    # -- helpers ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainNetConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InvalidParameterError(f"unknown train-net option(s): {', '.join(unknown)}.")
        return cls(**values)

    def key(self) -> str:
        """Hash of the options (device included: a checkpoint holds that device's generator state)."""
        d = self.to_dict()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def full_batch(self) -> bool:
        return self.batch is None or self.batch >= self.n_train


def check_device(device) -> str:
    """"cpu", "cuda" or "cuda:N"; a CUDA device must exist (torch imported only then)."""
    key = str(device).strip().lower()
    if key in ("cpu", "torch-cpu"):
        return "cpu"
    import re

    match = re.fullmatch(r"cuda(?::(\d+))?", key)
    if match is None:
        raise InvalidParameterError(f"unknown device {device!r}; choose {DEVICES}.")
    try:
        import torch
    except ImportError:
        raise InvalidParameterError(f"device {key} needs PyTorch, which is not installed; install the extra: "
                                    "pip install 'rfdm[nets]'.") from None
    if not torch.cuda.is_available():
        raise InvalidParameterError(f"device {key} was asked for but no CUDA GPU is available "
                                    "(torch.cuda.is_available() is False); use cpu.")
    index = int(match.group(1)) if match.group(1) is not None else 0
    if index >= torch.cuda.device_count():
        raise InvalidParameterError(f"device {key} was asked for but only {torch.cuda.device_count()} CUDA GPU(s) "
                                    "are visible.")
    return f"cuda:{index}"


def evaluation_steps(config: TrainNetConfig) -> list:
    """The steps at which a run is measured: 0, then every ``eval_every`` steps, or ``evals_per_decade``
    log-spaced steps per decade (rounded, deduplicated), and always the last step."""
    S = config.steps
    if config.eval_every is not None:
        steps = set(range(0, S + 1, config.eval_every))
    else:
        k = max(2, int(math.ceil(config.evals_per_decade * math.log10(max(S, 10)))) + 1)
        steps = {int(round(10 ** (math.log10(S) * j / (k - 1)))) for j in range(k)} | {0}
    steps.add(S)
    return sorted(x for x in steps if 0 <= x <= S)
