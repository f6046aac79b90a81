"""Point kinds: what one sweep point computes.  Every registered experiment with sweep outputs
(rfdm.protocol.register(..., sweep=...)) is a kind, its parameters and defaults read from its declared
configuration; :func:`register_kind` adds a hand-written kind."""

from __future__ import annotations

import dataclasses
from typing import Callable

from ..protocol import EXPERIMENTS, make_config, specs, whole_number


@dataclasses.dataclass(frozen=True)
class PointKind:
    """A hand-written point kind.

    defaults : every parameter with its default; the default's type is the parameter's type (int, float, str,
        bool, or a tuple for a list of numbers).  A float parameter accepts integers.
    compute : ``compute(params, seed) -> dict`` with ``scalars`` ({name: float}), ``vectors`` ({name: (dim,
        values)}), ``coords`` ({dim: values}, optional) and ``info`` (anything JSON-able, stored with the point).
    validate : ``validate(params, seed)`` raises InvalidParameterError for a bad point.
    descriptions : {output name: one line}, stored as the ``description`` attribute of collected variables.
    """

    defaults: dict
    compute: Callable[[dict, int], dict]
    validate: Callable[[dict, int], None] | None = None
    description: str = ""
    descriptions: dict = dataclasses.field(default_factory=dict)


class ExperimentKind:
    """The point kind of a registered experiment: parameters = its sweepable declared fields (a count such as
    p swept as its ratio psi_p = p/d), defaults read from the declaration at each use."""

    def __init__(self, experiment):
        self.experiment = experiment
        self.description = experiment.description
        self.descriptions = experiment.descriptions

    @property
    def defaults(self) -> dict:
        return self.experiment.sweep_defaults()

    def config(self, params: dict, seed: int):
        """The experiment's config of one point (counts from their ratios; the point seed)."""
        cls = self.experiment.config
        declared = specs(cls)
        kw = {}
        for name, (_, spec) in declared.items():
            if spec.ratio is not None:
                rflag, _, dim = spec.ratio
                psi_name = rflag.lstrip("-").replace("-", "_")
                if psi_name in params:
                    d = params.get(dim)
                    for rule in declared[dim][1].checks:
                        d = rule(dim, d, None)
                    kw[name] = whole_number(psi_name, params[psi_name], d)
            elif name in params:
                kw[name] = params[name]
        if "seed" in declared:
            kw["seed"] = seed
        if self.experiment.sweep_overrides is not None:
            kw.update(self.experiment.sweep_overrides(params))
        return make_config(cls, **kw)

    def validate(self, params: dict, seed: int):
        return self.config(params, seed)

    def compute(self, params: dict, seed: int) -> dict:
        config = self.config(params, seed)
        return self.experiment.sweep(self.experiment.compute(config), config)


class _Kinds(dict):
    """{name: kind}: the hand-registered kinds plus every sweepable registered experiment (looked up when
    read, so an experiment registered later is a kind too)."""

    def _sync(self):
        from .. import experiments  # noqa: F401  (registers the built-in experiments)

        for name, exp in EXPERIMENTS.items():
            current = dict.get(self, name)
            if exp.sweep is not None and (current is None or (isinstance(current, ExperimentKind)
                                                              and current.experiment is not exp)):
                dict.__setitem__(self, name, ExperimentKind(exp))

    def __getitem__(self, key):
        self._sync()
        return dict.__getitem__(self, key)

    def __contains__(self, key):
        self._sync()
        return dict.__contains__(self, key)

    def __iter__(self):
        self._sync()
        return dict.__iter__(self)

    def __len__(self):
        self._sync()
        return dict.__len__(self)

    def keys(self):
        self._sync()
        return dict.keys(self)

    def items(self):
        self._sync()
        return dict.items(self)

    def values(self):
        self._sync()
        return dict.values(self)

    def get(self, key, default=None):
        self._sync()
        return dict.get(self, key, default)


KINDS: dict = _Kinds()


def register_kind(name: str, defaults: dict, compute, validate=None, description: str = "",
                  descriptions: dict | None = None) -> None:
    """Add a hand-written point kind to :data:`KINDS` (see :class:`PointKind`)."""
    KINDS[name] = PointKind(dict(defaults), compute, validate, description, dict(descriptions or {}))
