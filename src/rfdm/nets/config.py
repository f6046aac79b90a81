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

from ..errors import InvalidParameterError
from ..protocol import MAX_COUNT, MAX_REAL, POSITIVE, POSITIVE_INT, RATIO, SEED, Config, Integer, OneOf, Real, param
from ..time_integrated import TIME_LAWS, check_time_window

ARCHS = ("mlp", "unet")
BUILTIN_DATA = ("digits", "gaussian", "mixture")
OPTIMIZERS = ("adam", "sgd")
DEVICES = "cpu, cuda or cuda:N"


@dataclass(frozen=True)
class TrainNetConfig(Config):
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

    data: str = param("digits", "digits (scikit-learn's 8x8 digits), gaussian, mixture, or FILE.npy ((n, d) vectors "
                      "or (n, H, W[, C]) images)", label="data")
    n_train: int = param(64, "training points (the rest, up to --n-test, is held out)", check=Integer(2, MAX_COUNT),
                         label="n_train")
    arch: str = param("mlp", "mlp (residual MLP on vectors) or unet (images only)", check=OneOf(ARCHS),
                      label="architecture")
    width: int = param(128, "hidden width of the MLP / base channel width W of the U-Net", check=POSITIVE_INT,
                       label="width")
    depth: int = param(2, "residual blocks of the MLP (U-Net: blocks per resolution)", check=POSITIVE_INT,
                       label="depth")
    steps: int = param(2500, "optimizer steps", check=POSITIVE_INT, label="steps")
    lr: float = param(6e-3, "learning rate", check=POSITIVE, label="lr")
    optimizer: str = param("adam", "adam or sgd (plain gradient descent)", check=OneOf(OPTIMIZERS),
                           label="optimizer")
    batch: int | None = param(None, "minibatch size (default: full batch)", check=POSITIVE_INT, optional=True,
                              label="batch")
    noise_draws: int = param(4, "fresh (t, xi) draws per point and step (1: plain DSM)", check=POSITIVE_INT,
                             label="noise_draws")
    eval_every: int | None = param(None, "evaluate every k steps (default: log-spaced, --evals-per-decade)",
                                   check=POSITIVE_INT, optional=True, label="eval_every")
    evals_per_decade: int = param(6, "log-spaced evaluations per decade of steps", check=POSITIVE_INT,
                                  label="evals_per_decade")
    n_samples: int = param(256, "generated samples per evaluation (f_mem, quality, energy distance)",
                           check=POSITIVE_INT, label="n_samples")
    seed: int = param(0, "seed of every random draw (split, data, initialisation, noise, sampler)", check=SEED,
                      label="seed")
    device: str = param("cpu", "cpu, cuda or cuda:N (one code path; the network is float32, metrics float64)",
                        label="device")
    t_law: str = param("log-uniform", "law Q of the diffusion time in the loss, on [t_min, t_max]",
                       check=OneOf(TIME_LAWS), label="time law")
    t_min: float = param(0.01, "smallest diffusion time (the sampler's last time)", unit="OU time", check=Real(0.0, 50.0, lo_open=True),
                         label="t_min")
    t_max: float = param(3.0, "largest diffusion time (the sampler's start T)", unit="OU time", check=Real(0.0, 50.0, lo_open=True),
                         label="t_max")
    n_test: int = param(512, "held-out points at most", check=POSITIVE_INT, label="n_test")
    dim: int = param(16, "dimension of the gaussian / mixture data", check=POSITIVE_INT, label="dim")
    m_norm: float = param(4.0, "mixture: |m|", check=Real(0.0, MAX_REAL), label="m_norm")
    upsample: int = param(1, "digits: integer upsampling factor of the 8x8 images", check=POSITIVE_INT,
                          label="upsample")
    eval_noise: int = param(4, "fixed noise draws (t, xi) per point for the train/held-out loss",
                            check=POSITIVE_INT, label="eval_noise")
    sample_steps: int = param(100, "steps of the reverse SDE", check=POSITIVE_INT, label="sample_steps")
    threshold: float = param(1.0 / 3.0, "f_mem counts samples with nearest/second-nearest training distance "
                             "below this", check=RATIO, label="threshold", show_default="1/3")
    mem_level: float = param(0.02, "tau_mem: first evaluated step with f_mem above this level",
                             check=Real(0.0, 1.0, lo_open=True, hi_open=True), label="mem_level")
    gen_margin: float = param(0.1, "tau_gen: first evaluated step whose log quality is within this share of the "
                              "way from the first to the best", check=Real(0.0, 1.0, lo_open=True, hi_open=True),
                              label="gen_margin")
    checkpoint_every: int | None = param(None, "checkpoint every k steps (default: at each evaluation)",
                                         check=POSITIVE_INT, optional=True, label="checkpoint_every")
    confidence: float = param(0.95, "level of the Clopper-Pearson interval of f_mem",
                              check=Real(0.0, 1.0, lo_open=True, hi_open=True), label="confidence")

    def check(self):
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
        t_min, t_max = check_time_window(self.t_min, self.t_max)
        s(self, "t_min", t_min)
        s(self, "t_max", t_max)
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
