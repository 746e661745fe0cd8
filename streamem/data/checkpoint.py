"""Checkpoints of a batch fit, for jobs that get pre-empted: save after every iteration,
resume from the last one.

A checkpoint is a directory, local or in an object store. Each save writes a new zarr group
``state-NNNNNN.zarr`` under a new name, then replaces the small
file ``LATEST`` that names it (``os.replace`` of a local file, one request to a store: both
atomic), then removes the older groups. A process killed at any moment leaves ``LATEST``
naming a complete state. Nothing is pickled: parameters are arrays
and the rest is JSON.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from streamem.core.params import MixtureParams
from streamem.data.storage import location
from streamem.data.store import read_group, write_group
from streamem.engine.em import FitState

__all__ = [
    "CHECKPOINT_FORMAT",
    "is_checkpoint",
    "load_state",
    "runs_to_state",
    "save_state",
    "state_to_runs",
]

CHECKPOINT_FORMAT = "streamem.data.checkpoint"
_LATEST = "LATEST"


def save_state(
    directory, step: int, arrays: dict, attrs: dict, pack: bool = False, storage_options: dict | None = None
) -> None:
    """Save one state of a fit as the checkpoint's latest, atomically. ``directory`` is a
    local path or any fsspec URL (``s3://bucket/run/checkpoint``)."""
    directory = location(directory, storage_options)
    if directory.local:
        Path(directory.path).mkdir(parents=True, exist_ok=True)
    name = f"state-{step:06d}-{uuid.uuid4().hex[:8]}.zarr"
    write_group(directory / name, arrays, {"format": CHECKPOINT_FORMAT, **attrs}, pack)  # named once whole
    (directory / _LATEST).write_text(json.dumps({"state": name}))
    for old in directory.listdir():
        if old != name and old.endswith(".zarr") and not old.startswith("."):
            (directory / old).remove()


def is_checkpoint(path, storage_options: dict | None = None) -> bool:
    """Whether ``path`` is a checkpoint directory (it names its latest state)."""
    try:
        return (location(path, storage_options) / _LATEST).isfile()
    except (OSError, ValueError):
        return False


def load_state(directory, storage_options: dict | None = None) -> tuple[dict, dict] | None:
    """The latest state, or None when there is none yet; ValueError for a foreign directory."""
    directory = location(directory, storage_options)
    latest = directory / _LATEST
    try:
        present = latest.exists()
    except OSError as exc:
        raise ValueError(f"cannot read the checkpoint in {directory.url!r}: {exc}") from None
    if not present:  # a state written before the first LATEST (the process stopped) is not a foreign file
        if any(not name.startswith((".", "state-")) for name in directory.listdir()):
            raise ValueError(f"{directory.url!r} is not a streamem checkpoint: it has no {_LATEST} file")
        return None
    try:
        arrays, attrs = read_group(directory / json.loads(latest.read_text())["state"])
    except Exception as exc:  # a damaged checkpoint names itself
        raise ValueError(f"cannot read the checkpoint in {directory.url!r}: {exc}") from None
    if attrs.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{directory.url!r} is not a streamem checkpoint")
    return arrays, attrs


def runs_to_state(runs: list[FitState], shift) -> tuple[dict, dict]:
    """Arrays and JSON attributes for the candidates of a fit (each by :meth:`FitState.to_arrays`)."""
    arrays = {"shift": np.asarray(shift)}
    meta = []
    for i, run in enumerate(runs):
        run_arrays, run_meta = run.to_arrays(f"run{i}_")
        arrays.update(run_arrays)
        meta.append(run_meta)
    return arrays, {"runs": meta}


def state_to_runs(arrays: dict, attrs: dict, params_class=MixtureParams) -> tuple[list[FitState], np.ndarray]:
    """Candidates and shift back from :func:`runs_to_state`'s arrays and attributes."""
    runs = [FitState.from_arrays(arrays, meta, f"run{i}_", params_class) for i, meta in enumerate(attrs["runs"])]
    return runs, arrays["shift"]
