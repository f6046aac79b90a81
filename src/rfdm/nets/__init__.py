"""rfdm.nets: real score networks (PyTorch) trained by denoising score matching on the OU process of rfdm,
measured along training (losses, f_mem, a digits FID, tau_gen, tau_mem), and a memorization monitor for any
training loop.  See docs/nets.md.

torch (and scikit-learn for the digits) are the optional extra ``pip install 'rfdm[nets]'``.  The torch-free
parts (:class:`TrainNetConfig`, the data loading, the metrics) import without it; the names that need torch
(the networks, :func:`train_net`, :class:`MemorizationMonitor`, ...) are loaded on first use.
"""

from __future__ import annotations

import importlib

from .config import ARCHS, TrainNetConfig, evaluation_steps
from .data import NetData, load_dataset

_LAZY = {
    "train_net": "train", "sample_network": "train", "init_network": "train", "DSMEvaluator": "train",
    "build_network": "models", "ScoreNetwork": "models", "ResidualMLP": "models", "UNet": "models",
    "NetworkScore": "models", "MemorizationMonitor": "monitor",
    "clopper_pearson": "metrics", "frechet_distance": "metrics", "DigitsFeatures": "metrics",
    "memorization": "metrics", "tau_gen": "metrics", "tau_mem": "metrics",
}

__all__ = ["ARCHS", "TrainNetConfig", "evaluation_steps", "NetData", "load_dataset", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rfdm.nets' has no attribute {name!r}")
