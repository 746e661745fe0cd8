"""Fitting a stream that never ends: the runner, its sources, drift alarms and metrics."""

from streamem.stream.runner import RunResult, run

__all__ = ["RunResult", "run"]
