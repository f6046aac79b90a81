"""rfdm: a solvable model of generative diffusion with random-features score networks.

Modules follow docs/theory.md: :mod:`rfdm.diffusion` (the OU process), :mod:`rfdm.data` (data laws and their
scores), :mod:`rfdm.activations` (activations and 1-D Gaussian expectations), :mod:`rfdm.features` (random
features and their exact statistics), :mod:`rfdm.dynamics` (closed-form training dynamics), and the CLI.
"""

__version__ = "0.1.0"

from .activations import Activation, available_activations, get_activation, register_activation
from .data import EmpiricalData, GaussianData
from .diffusion import OrnsteinUhlenbeck, decay, delta_t
from .dynamics import GradientFlow, loss_of_weights, score_error_of_weights, train_by_descent
from .errors import InvalidParameterError, NumericalError, RfdmError
from .features import (PopulationStatistics, RandomFeatures, TrainingStatistics, monte_carlo_statistics,
                       noise_averaged_statistics, population_statistics)

__all__ = [
    "__version__", "Activation", "available_activations", "get_activation", "register_activation",
    "EmpiricalData", "GaussianData", "OrnsteinUhlenbeck", "decay", "delta_t", "GradientFlow",
    "loss_of_weights", "score_error_of_weights", "train_by_descent", "InvalidParameterError",
    "NumericalError", "RfdmError", "PopulationStatistics", "RandomFeatures", "TrainingStatistics",
    "monte_carlo_statistics", "noise_averaged_statistics", "population_statistics",
]


def __getattr__(name):
    """``rfdm.MemorizationMonitor`` (rfdm.nets, needs torch) is imported on first use, so `import rfdm` works
    without torch."""
    if name == "MemorizationMonitor":
        from .nets.monitor import MemorizationMonitor

        return MemorizationMonitor
    raise AttributeError(f"module 'rfdm' has no attribute {name!r}")
