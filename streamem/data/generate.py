"""Generated data: rows of a random Gaussian mixture, lazily as a dask array or written to a
zarr store (the demo's and the tests' data).
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import zarr

from streamem.data.storage import location
from streamem.data.store import atomic_location, check_new_output

__all__ = ["make_data", "mixture_data"]


def _mixture_block(block_id, chunk_rows, n_features, means, scales, weights, seed, labels):
    index = block_id[0]
    rng = np.random.default_rng([seed, index])
    n_rows = chunk_rows[index]
    y = rng.choice(len(weights), size=n_rows, p=weights)
    if labels:
        return y.astype(np.int32)
    noise = rng.standard_normal((n_rows, n_features))
    return means[y] + np.einsum("nd,nde->ne", noise, scales[y])


def mixture_data(n_samples: int, n_features: int, n_components: int, chunk_size: int = 100_000, seed: int = 0):
    """A generated Gaussian mixture as lazy dask arrays: ``(X, labels, truth)``.

    Each chunk's rows depend only on ``seed`` and the chunk's position, so data larger
    than memory is generated (and written) one chunk at a time, in parallel. ``truth``
    holds the true ``weights``, ``means`` and ``covariances``.
    """
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.uniform(-10.0, 10.0, size=(n_components, n_features))
    scales = rng.uniform(-0.6, 0.6, size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    scales += np.eye(n_features) * rng.uniform(0.5, 1.5, size=(n_components, 1, 1))
    chunk_rows = da.core.normalize_chunks((chunk_size,), (n_samples,))[0]
    common = dict(chunk_rows=chunk_rows, n_features=n_features, means=means, scales=scales, weights=weights, seed=seed)
    X = da.map_blocks(_mixture_block, chunks=(chunk_rows, (n_features,)), dtype=np.float64, labels=False, **common)
    y = da.map_blocks(_mixture_block, chunks=(chunk_rows,), dtype=np.int32, labels=True, **common)
    truth = {"weights": weights, "means": means, "covariances": scales.transpose(0, 2, 1) @ scales}
    return X, y, truth


def make_data(
    out,
    n_samples: int,
    n_features: int,
    n_components: int,
    chunk_size: int = 100_000,
    seed: int = 0,
    storage_options: dict | None = None,
):
    """Write a generated Gaussian mixture (:func:`mixture_data`) to a zarr group ``out`` (a
    local path or any fsspec URL, opened with ``storage_options``): ``X`` and ``labels``,
    chunk by chunk, so data larger than memory can be made on any machine. The true
    weights, means and covariances are in the group's attributes. Written to a temporary
    name, then put in place (:func:`atomic_location`).
    """
    target = location(out, storage_options)
    check_new_output(target)
    X, y, truth = mixture_data(n_samples, n_features, n_components, chunk_size, seed)
    with atomic_location(target) as tmp:
        group = zarr.open_group(tmp.zarr_store(read_only=False), mode="w")
        zx = group.create_array("X", shape=X.shape, chunks=(chunk_size, n_features), dtype="f8")
        zy = group.create_array("labels", shape=y.shape, chunks=(chunk_size,), dtype="i4")
        group.attrs.update(
            {**{name: value.tolist() for name, value in truth.items()}, "seed": seed, "generator": "streamem.make_data"}
        )
        da.store([X, y], [zx, zy], lock=False)
    return Path(out) if target.local else target.url
