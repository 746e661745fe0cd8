"""streamem: Gaussian mixtures fitted by EM on data larger than memory, on Dask."""

from __future__ import annotations

from .base import load
from .batch import GaussianMixture
from .bayesian import BayesianGaussianMixture
from .io import make_data, read_data
from .online import OnlineGaussianMixture
from .select import select_n_components
from .studentt import StudentTMixture

__all__ = [
    "BayesianGaussianMixture",
    "GaussianMixture",
    "OnlineGaussianMixture",
    "StudentTMixture",
    "__version__",
    "from_sklearn",
    "load",
    "make_data",
    "read_data",
    "select_n_components",
]

from_sklearn = GaussianMixture.from_sklearn

__version__ = "0.1.0"
