"""A progress bar that costs nothing when switched off."""

from __future__ import annotations

import contextlib


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, desc: str):
    """Yield a `tqdm` bar over `total` units when `enabled`, else an object that ignores updates."""
    if not enabled:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc) as bar:
        yield bar
