"""Stop a diffusion model's training when memorization starts (rfdm.nets.MemorizationMonitor)."""
import logging

import numpy as np
import torch
from sklearn.datasets import load_digits

from rfdm.nets import MemorizationMonitor, build_network, sample_network

logging.basicConfig(level=logging.INFO, format="%(message)s")
X = load_digits().data
X = (X - X.mean(0)) / np.sqrt(X.var(0).mean())           # unit variance per pixel on average
train, held_out = X[:64], X[64:564]
torch.manual_seed(0)
model = build_network("mlp", (64,), width=128)          # any torch model N(x, t) predicting -noise
opt = torch.optim.Adam(model.parameters(), lr=6e-3)
x0 = torch.tensor(train, dtype=torch.float32).repeat(4, 1)
monitor = MemorizationMonitor(train, lambda m: sample_network(m, 100, steps=50), held_out=held_out, every=200)
for step in range(1, 3001):
    t = 0.01 * 300 ** torch.rand(len(x0))                # t log-uniform on [0.01, 3]
    xi = torch.randn_like(x0)
    xt = torch.exp(-t)[:, None] * x0 + torch.sqrt(1 - torch.exp(-2 * t))[:, None] * xi
    loss = (model(xt, t) + xi).pow(2).mean()             # DSM loss of the OU process
    opt.zero_grad(); loss.backward(); opt.step()         # noqa: E702
    monitor.update(step, model)
    if monitor.should_stop:
        print(f"memorization started: stopped at step {step}")
        break
