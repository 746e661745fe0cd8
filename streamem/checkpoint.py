"""Checkpoints of a batch fit, for jobs that get pre-empted: save after every iteration,
resume from the last one.

A checkpoint is a directory. Each save writes a new zarr group ``state-NNNNNN.zarr`` (under
a temporary name, then renamed), then replaces the small file ``LATEST`` that names it
(``os.replace`` of a file is atomic), then removes the older groups. A process killed at any
moment leaves ``LATEST`` naming a complete state. Nothing is pickled: parameters are arrays
and the rest is JSON.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np

from . import io
from .em import FitState
from .params import MixtureParams

__all__ = [
    "CHECKPOINT_FORMAT",
    "is_checkpoint",
    "load_state",
    "runs_to_state",
    "save_state",
    "state_to_runs",
]

CHECKPOINT_FORMAT = "streamem.checkpoint"
_LATEST = "LATEST"


def save_state(directory, step: int, arrays: dict, attrs: dict, pack: bool = False) -> None:
    """Save one state of a fit as the checkpoint's latest, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"state-{step:06d}-{uuid.uuid4().hex[:8]}.zarr"
    with io.atomic_path(directory / name) as tmp:
        io.write_group(tmp, arrays, {"format": CHECKPOINT_FORMAT, **attrs}, pack)
    with io.atomic_path(directory / _LATEST) as pointer:
        pointer.write_text(json.dumps({"state": name}))
    for old in directory.iterdir():
        if old.name != name and old.name != _LATEST and old.name.endswith(".zarr"):
            shutil.rmtree(old, ignore_errors=True)


def is_checkpoint(path) -> bool:
    """Whether ``path`` is a checkpoint directory (it names its latest state)."""
    return (Path(path) / _LATEST).is_file()


def load_state(directory) -> tuple[dict, dict] | None:
    """The latest state, or None when there is none yet; ValueError for a foreign directory."""
    directory = Path(directory)
    latest = directory / _LATEST
    if not latest.exists():
        if directory.exists() and any(p for p in directory.iterdir() if not p.name.startswith(".")):
            raise ValueError(f"{str(directory)!r} is not a streamem checkpoint: it has no {_LATEST} file")
        return None
    try:
        arrays, attrs = io.read_group(directory / json.loads(latest.read_text())["state"])
    except Exception as exc:  # a damaged checkpoint names itself
        raise ValueError(f"cannot read the checkpoint in {str(directory)!r}: {exc}") from None
    if attrs.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(directory)!r} is not a streamem checkpoint")
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
