"""Progress bars on a terminal: one for the passes over the data of a fit, and one per pass
over its chunks.
"""

from __future__ import annotations

import contextlib
import sys
import time

import click

__all__ = ["PassBar", "pass_bars", "progress_bar"]


def progress_bar(enabled: bool):
    """A bar over the tasks of a computation, on a terminal and the local scheduler."""
    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from dask.diagnostics import ProgressBar

    return ProgressBar(out=sys.stderr, minimum=1.0)


class PassBar:
    """A bar over the chunks of one pass, drawn once the pass has lasted ``minimum`` seconds
    (by default the dask configuration's ``streamem.progress-delay``, 1 s)."""

    def __init__(self, n_chunks: int, minimum: float | None = None):
        import dask

        self.n_chunks = n_chunks
        self.minimum = float(dask.config.get("streamem.progress-delay", 1.0)) if minimum is None else minimum
        self.done = 0
        self.bar = None

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.perf_counter() - self.start >= self.minimum:
            self.bar = click.progressbar(length=self.n_chunks, label="chunks", file=sys.stderr, show_pos=True)
            self.bar.__enter__()
            self.bar.update(self.done)

    def __exit__(self, *exc_info):
        if self.bar is not None:
            self.bar.__exit__(*exc_info)


def pass_bars(enabled: bool):
    """A bar over the chunks of each pass of a fit, on a terminal, whatever the scheduler."""
    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from streamem.engine.passes import chunk_progress

    return chunk_progress(PassBar)
