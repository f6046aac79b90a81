"""Progress bars (tqdm) and messages (logging) of long steps, silent unless the `rfdm` logger shows INFO.

The command line sets the `rfdm` logger to INFO (WARNING under --quiet) and turns the bars off under --json
and --quiet; a library user sees messages and bars after ``logging.basicConfig(level=logging.INFO)``."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("rfdm")
#: progress bars on or off (the command line turns them off under --json and --quiet)
BARS = {"on": True}


def enabled() -> bool:
    return BARS["on"] and log.isEnabledFor(logging.INFO) and bool(log.handlers or logging.getLogger().handlers)


def progress(iterable=None, total=None, desc: str | None = None, disable_quiet: bool = False, **kw):
    """A tqdm bar on stderr (disabled when messages are off or ``disable_quiet``); an iterable wrapper or a
    context manager."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, disable=disable_quiet or not enabled(),
                leave=False, dynamic_ncols=True, **kw)


def messages(name: str, quiet: bool = False):
    """``say(message)`` for an experiment: INFO on the logger ``rfdm.NAME`` (nothing when ``quiet``)."""
    logger = logging.getLogger(f"rfdm.{name}")
    return (lambda message: None) if quiet else logger.info


def callback(desc: str, quiet: bool = False):
    """A ``progress(done, total)`` callback (the form the samplers and trainers take) drawing one tqdm bar."""
    state = {"bar": None}

    def update(done, total):
        if quiet or not enabled():
            return
        if state["bar"] is None:
            state["bar"] = progress(total=total, desc=desc)
        bar = state["bar"]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            state["bar"] = None

    return update
