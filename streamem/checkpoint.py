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
    "history_from_arrays",
    "history_to_arrays",
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


HISTORY_KEYS = ("iteration", "log_likelihood", "change", "seconds", "objective")


def history_to_arrays(history: list[dict], prefix: str) -> tuple[dict, dict]:
    """A fit's history as float arrays named ``prefix + key`` (its first change is infinite,
    which JSON cannot hold), and its re-seeded components as JSON."""
    arrays = {
        f"{prefix}{key}": np.array([h[key] for h in history], dtype=np.float64)
        for key in HISTORY_KEYS
        if all(key in h for h in history) and (history or key != "objective")
    }
    reseeded = {str(h["iteration"]): h["reseeded"] for h in history if "reseeded" in h}
    return arrays, reseeded


def history_from_arrays(arrays: dict, prefix: str, reseeded: dict) -> list[dict]:
    """The history back from :func:`history_to_arrays`."""
    keys = [key for key in HISTORY_KEYS if f"{prefix}{key}" in arrays]
    history = []
    for values in zip(*(arrays[f"{prefix}{key}"].tolist() for key in keys), strict=True):
        record = dict(zip(keys, values))
        record["iteration"] = int(record["iteration"])
        if str(record["iteration"]) in reseeded:
            record["reseeded"] = [int(k) for k in reseeded[str(record["iteration"])]]
        history.append(record)
    return history


def runs_to_state(runs, shift) -> tuple[dict, dict]:
    """Arrays and JSON attributes for the candidates of a fit."""
    arrays = {"shift": np.asarray(shift)}
    meta = []
    for i, run in enumerate(runs):
        p = run.params
        arrays[f"run{i}_weights"] = p.weights
        arrays[f"run{i}_means"] = p.means
        arrays[f"run{i}_covariances"] = p.covariances
        arrays[f"run{i}_precisions_cholesky"] = p.precisions_chol
        arrays[f"run{i}_means_history"] = np.stack(run.means_history) if run.means_history else p.means[None]
        history, reseeded = history_to_arrays(run.history, f"run{i}_history_")
        arrays.update(history)
        meta.append({
            "covariance_type": p.covariance_type,
            "lower_bound": None if not np.isfinite(run.objective) else float(run.objective),
            "converged": bool(run.converged),
            "n_iter": int(run.n_iter),
            "reseeded": reseeded,
        })  # fmt: skip
    return arrays, {"runs": meta}


def state_to_runs(arrays: dict, attrs: dict) -> tuple[list[FitState], np.ndarray]:
    """Candidates and shift back from :func:`runs_to_state`'s arrays and attributes."""
    runs = []
    for i, meta in enumerate(attrs["runs"]):
        params = MixtureParams(
            arrays[f"run{i}_weights"], arrays[f"run{i}_means"], arrays[f"run{i}_covariances"],
            arrays[f"run{i}_precisions_cholesky"], meta["covariance_type"],
        )  # fmt: skip
        history = history_from_arrays(arrays, f"run{i}_history_", meta["reseeded"])
        lower_bound = -np.inf if meta["lower_bound"] is None else meta["lower_bound"]
        means = list(arrays[f"run{i}_means_history"])
        runs.append(FitState(params, lower_bound, meta["converged"], meta["n_iter"], history, means))
    return runs, arrays["shift"]
