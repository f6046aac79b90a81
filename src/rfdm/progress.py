"""Progress bars (tqdm) and messages (logging) of long steps, silent unless the `rfdm` logger shows INFO.

The command line sets the `rfdm` logger to INFO (WARNING under --quiet or --json); a library user sees bars
only after ``logging.getLogger("rfdm").setLevel(logging.INFO)`` with a handler."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("rfdm")


def enabled() -> bool:
    return log.isEnabledFor(logging.INFO) and bool(log.handlers or logging.getLogger().handlers)


def progress(iterable=None, total=None, desc: str | None = None, **kw):
    """A tqdm bar on stderr (disabled when messages are off); use as an iterable wrapper or a context."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, disable=not enabled(), leave=False,
                dynamic_ncols=True, **kw)


def callback(desc: str):
    """A ``progress(done, total)`` callback (the form the samplers and trainers take) drawing one tqdm bar."""
    state = {"bar": None}

    def update(done, total):
        if not enabled():
            return
        if state["bar"] is None:
            state["bar"] = progress(total=total, desc=desc)
        bar = state["bar"]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            state["bar"] = None

    return update
