"""Progress reporting: a bar that costs nothing when switched off, or a caller's callback.

The engines take `progress=True` (a `tqdm` bar), `False`, or a callable `progress(fraction)`
that receives the fraction of the run done, in $[0, 1]$, as it advances (how `linflow run`
moves its own bar within a chunk).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


class _Fraction:
    """A bar-like object that reports `done / total` to a callback."""

    def __init__(self, report: Callable, total: int):
        self.report, self.total, self.done = report, total, 0

    def update(self, n: int = 1) -> None:
        if n:
            self.done += n
            self.report(min(1.0, self.done / max(self.total, 1)))


@contextlib.contextmanager
def progress_bar(progress, total: int, desc: str, **options):
    """Yield an object with `update(n)` over `total` units: a `tqdm` bar (with `options`) when
    `progress` is True, one calling `progress(fraction)` when it is callable, else one that
    ignores updates."""
    if callable(progress):
        yield _Fraction(progress, total)
        return
    if not progress:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, **options) as bar:
        yield bar


def progress_meter(progress) -> diffrax.AbstractProgressMeter:
    """The diffrax progress meter for an engine's `progress` argument (see `progress_bar`)."""
    if callable(progress):
        return CallbackMeter(progress)
    return diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter()


class CallbackMeter(diffrax.AbstractProgressMeter):
    """Calls `report(t / t1)` on the host every `every` solver steps, and `report(1)` at the end.

    `report` is a static field: pass the same callable for every solve (e.g. one bound method)
    so that the solve compiles once.
    """

    report: Callable = eqx.field(static=True)
    every: int = eqx.field(static=True, default=10)

    def init(self):
        return jnp.zeros((), jnp.int32)

    def step(self, state, progress):
        jax.lax.cond(
            state % self.every == 0,
            lambda p: jax.debug.callback(self.report, p),
            lambda p: None,
            progress,
        )
        return state + 1

    def close(self, state):
        jax.debug.callback(self.report, jnp.ones(()))
