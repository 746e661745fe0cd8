"""streamem: Gaussian mixtures fitted by EM on data larger than memory, on Dask."""

from __future__ import annotations

from .batch import GaussianMixture, load

__all__ = ["GaussianMixture", "__version__", "load"]

__version__ = "0.1.0"
