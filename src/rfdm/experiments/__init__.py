"""Experiments: each is a declared configuration (rfdm.protocol), a ``compute(config)`` step returning a
self-describing result, a ``save`` step writing it atomically with its figure, and a ``plot`` step that reads
only the saved result.  Importing this package registers every built-in experiment (rfdm.protocol.EXPERIMENTS)."""

from . import dynamics, figures, outlier, regimes, sampling, spectrum, timescales, train_net  # noqa: F401
from ..published import _flows  # noqa: F401,E402  (the published-flow experiment: the exact flows of the published figures)
