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
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from . import io

__all__ = ["CHECKPOINT_FORMAT", "load_state", "runs_to_state", "save_state", "state_to_runs"]

CHECKPOINT_FORMAT = "streamem.checkpoint"
_LATEST = "LATEST"


def save_state(directory, step: int, arrays: dict, attrs: dict) -> None:
    """Save one state of a fit as the checkpoint's latest, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"state-{step:06d}-{uuid.uuid4().hex[:8]}.zarr"
    tmp = directory / f".{name}.tmp"
    io.write_group(tmp, arrays, {"format": CHECKPOINT_FORMAT, **attrs})
    os.replace(tmp, directory / name)
    pointer = directory / f".{_LATEST}.tmp-{uuid.uuid4().hex}"
    pointer.write_text(json.dumps({"state": name}))
    os.replace(pointer, directory / _LATEST)
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
        arrays[f"run{i}_means_history"] = np.stack(run.means) if run.means else p.means[None]
        for key in ("log_likelihood", "change", "seconds", "objective"):
            if all(key in h for h in run.history) and (run.history or key != "objective"):
                arrays[f"run{i}_history_{key}"] = np.array([h[key] for h in run.history], dtype=np.float64)
        meta.append({
            "covariance_type": p.covariance_type,
            "lower_bound": None if not np.isfinite(run.lower_bound) else float(run.lower_bound),
            "converged": bool(run.converged),
            "n_iter": int(run.n_iter),
            "reseeded": {str(h["iteration"]): h["reseeded"] for h in run.history if "reseeded" in h},
        })  # fmt: skip
    return arrays, {"runs": meta}


def state_to_runs(arrays: dict, attrs: dict, make_run, make_params):
    """Candidates and shift back from :func:`runs_to_state`'s arrays and attributes."""
    runs = []
    for i, meta in enumerate(attrs["runs"]):
        params = make_params(
            arrays[f"run{i}_weights"], arrays[f"run{i}_means"], arrays[f"run{i}_covariances"],
            arrays[f"run{i}_precisions_cholesky"], meta["covariance_type"],
        )  # fmt: skip
        history = []
        n = meta["n_iter"]
        for j in range(n):
            record = {"iteration": j + 1}
            for key in ("log_likelihood", "change", "seconds", "objective"):
                if f"run{i}_history_{key}" in arrays:
                    record[key] = float(arrays[f"run{i}_history_{key}"][j])
            if str(j + 1) in meta["reseeded"]:
                record["reseeded"] = [int(k) for k in meta["reseeded"][str(j + 1)]]
            history.append(record)
        lower_bound = -np.inf if meta["lower_bound"] is None else meta["lower_bound"]
        run = make_run(params, lower_bound, meta["converged"], n, history, list(arrays[f"run{i}_means_history"]))
        runs.append(run)
    return runs, arrays["shift"]
