"""streamem: Gaussian mixtures fitted by EM on data larger than memory, on Dask."""

from __future__ import annotations

from streamem.data.arrays import read_data
from streamem.data.generate import make_data
from streamem.models.base import load
from streamem.models.bayesian import BayesianGaussianMixture
from streamem.models.gaussian import GaussianMixture
from streamem.models.online import OnlineGaussianMixture
from streamem.models.select import select_n_components
from streamem.models.studentt import StudentTMixture

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
