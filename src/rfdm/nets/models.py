"""PyTorch score networks for the OU process of rfdm (docs/theory.md §1), trained by denoising score matching.

Parametrisation (as the time-integrated random-features model, docs/theory.md §7, with alpha_t = 1/sqrt(Delta_t)
and beta_t = 0): the network outputs N_theta(x, t), of the shape of x, and the score is

    S_theta(x, t) = N_theta(x, t) / sqrt(Delta_t),

so the per-dimension DSM loss at (x_0, t, xi), x_t = e^{-t} x_0 + sqrt(Delta_t) xi, is

    l = (1/d) |sqrt(Delta_t) S_theta(x_t, t) + xi|^2 = (1/d) |N_theta(x_t, t) + xi|^2

(docs/theory.md §3 and §7; the network predicts -xi).  The last layer starts at zero, so N = 0 and l = 1 on
average at step 0.  The networks are float32 (torch's default); losses and metrics are accumulated in
float64 by the callers.

* :class:`ResidualMLP` (vectors, (N, d)): x -> Linear(d, W), ``depth`` residual blocks
  h + Linear(SiLU(Linear(SiLU(LayerNorm(h))) + E(t))), -> LayerNorm, SiLU, Linear(W, d) (zero-initialised).
* :class:`UNet` (images, (N, C, H, W), C = 1..3): two resolutions with base width W (W and 2W channels),
  residual blocks (GroupNorm, SiLU, 3x3 conv, plus the time embedding), a stride-2 convolution down and a
  nearest-neighbour resize up to the skip's size (any H, W), the skip concatenated; output conv zero-initialised.
* Time embedding E(t): sinusoids of log t at 16 frequencies geometric in [1/8, 16] (sin and cos), then
  Linear-SiLU-Linear to the width.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InvalidParameterError


def delta_torch(t: torch.Tensor) -> torch.Tensor:
    """Delta_t = 1 - e^{-2t} = -expm1(-2t) on a tensor (docs/theory.md §1)."""
    return -torch.expm1(-2.0 * t)


class TimeEmbedding(nn.Module):
    """E(t) = MLP([sin(omega_k log t), cos(omega_k log t)]_k), omega_k geometric in [1/8, 16]."""

    def __init__(self, width: int, n_freq: int = 16):
        super().__init__()
        self.register_buffer("omega", torch.logspace(math.log10(1 / 8), math.log10(16), n_freq))
        self.mlp = nn.Sequential(nn.Linear(2 * n_freq, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        a = torch.log(t)[:, None] * self.omega[None, :]
        return self.mlp(torch.cat([torch.sin(a), torch.cos(a)], dim=1))


class ResidualMLP(nn.Module):
    """Residual MLP N(x, t) for vectors (N, d), hidden width ``width``, ``depth`` residual blocks."""

    def __init__(self, d: int, width: int, depth: int = 2):
        super().__init__()
        self.d, self.width, self.depth = d, width, depth
        self.embed = TimeEmbedding(width)
        self.inp = nn.Linear(d, width)
        self.norms = nn.ModuleList([nn.LayerNorm(width) for _ in range(depth)])
        self.fc1 = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.fc2 = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e = self.embed(t)
        h = self.inp(x)
        for norm, f1, f2 in zip(self.norms, self.fc1, self.fc2):
            h = h + f2(F.silu(f1(F.silu(norm(h))) + e))
        return self.out(F.silu(self.out_norm(h)))


def _groups(ch: int) -> int:
    return math.gcd(ch, 8)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int):
        super().__init__()
        self.n1 = nn.GroupNorm(_groups(c_in), c_in)
        self.c1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.e = nn.Linear(emb, c_out)
        self.n2 = nn.GroupNorm(_groups(c_out), c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, e):
        h = self.c1(F.silu(self.n1(x))) + self.e(e)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class UNet(nn.Module):
    """A small U-Net N(x, t) for images (N, C, H, W), C = 1..3, base width W (channels W and 2W)."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        if not 1 <= channels <= 3:
            raise InvalidParameterError(f"the U-Net takes 1 to 3 channels, got {channels}.")
        self.channels, self.width = channels, width
        emb = 4 * width
        self.embed = TimeEmbedding(emb)
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.down1 = ResBlock(width, width, emb)
        self.pool = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.down2 = ResBlock(width, 2 * width, emb)
        self.mid = ResBlock(2 * width, 2 * width, emb)
        self.up = ResBlock(3 * width, width, emb)
        self.out_norm = nn.GroupNorm(_groups(width), width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e = self.embed(t)
        h1 = self.down1(self.inp(x), e)
        h2 = self.mid(self.down2(self.pool(h1), e), e)
        u = F.interpolate(h2, size=h1.shape[-2:], mode="nearest")
        h = self.up(torch.cat([u, h1], dim=1), e)
        return self.out(F.silu(self.out_norm(h)))


class ScoreNetwork(nn.Module):
    """A network N(x, t) with its score S(x, t) = N(x, t)/sqrt(Delta_t) and DSM loss (module docstring).
    ``shape`` is the per-point shape ((d,) or (C, H, W)); ``forward`` takes x of shape (N, *shape) and t (N,)."""

    def __init__(self, net: nn.Module, shape: tuple):
        super().__init__()
        self.net, self.shape = net, tuple(int(s) for s in shape)
        self.d = int(np.prod(self.shape))

    def forward(self, x, t):
        return self.net(x, t)

    def score(self, x, t):
        return self.net(x, t) / torch.sqrt(delta_torch(t)).view(-1, *([1] * (x.dim() - 1)))

    def dsm_losses(self, x0, t, xi):
        """Per-point DSM loss (1/d)|N(e^{-t} x0 + sqrt(Delta_t) xi, t) + xi|^2 (float32 tensor (N,))."""
        view = (-1,) + (1,) * (x0.dim() - 1)
        xt = torch.exp(-t).view(view) * x0 + torch.sqrt(delta_torch(t)).view(view) * xi
        r = self.net(xt, t) + xi
        return r.pow(2).flatten(1).mean(1)


def build_network(arch: str, shape: tuple, width: int, depth: int = 2) -> ScoreNetwork:
    """The score network of an architecture for points of ``shape``."""
    if width < 1:
        raise InvalidParameterError(f"width must be a positive integer, got {width}.")
    if arch == "mlp":
        return ScoreNetwork(ResidualMLP(int(np.prod(shape)), width, depth), shape)
    if arch == "unet":
        if len(shape) != 3:
            raise InvalidParameterError(f"the unet architecture needs images (C, H, W), got points of shape {shape}.")
        return ScoreNetwork(UNet(shape[0], width), shape)
    raise InvalidParameterError(f"unknown architecture {arch!r}; choose mlp or unet.")


class NetworkScore:
    """A trained :class:`ScoreNetwork` as an rfdm sampler score source (rfdm.sampling protocol): ``d`` and
    ``score(x, t)`` on (B, d) float64 NumPy arrays; ``to_backend`` keeps the states on a torch device."""

    def __init__(self, model: ScoreNetwork, device=None):
        self.model = model
        self.d = model.d
        self.device = next(model.parameters()).device if device is None else torch.device(device)
        self.work_per_sample = 4 * self.d

    def _score_tensor(self, x: torch.Tensor, t: float) -> torch.Tensor:
        B = x.shape[0]
        xx = x.to(self.device, torch.float32).reshape(B, *self.model.shape)
        tt = torch.full((B,), float(t), device=self.device, dtype=torch.float32)
        with torch.no_grad():
            out = self.model.net(xx, tt).reshape(B, -1).to(torch.float64)
        return out / math.sqrt(-math.expm1(-2.0 * float(t)))

    def score(self, x, t):
        return self._score_tensor(torch.as_tensor(np.asarray(x)), t).cpu().numpy()

    def to_backend(self, backend):
        outer = self

        class _OnDevice:
            d = outer.d

            def score(self, x, t):
                return outer._score_tensor(x, t).to(x.device)

        return _OnDevice()

    def describe(self) -> dict:
        return {"score": "network", "d": self.d}
