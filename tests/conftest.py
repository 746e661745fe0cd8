from __future__ import annotations

import numpy as np
import pytest

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def mixture_data(n_samples=3000, n_features=3, n_components=3, seed=0, spread=4.0, offset=0.0):
    """Rows of a Gaussian mixture with random means and anisotropic covariances."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-spread, spread, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    scales = rng.uniform(0.5, 1.5, size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    noise = np.einsum("nd,nde->ne", rng.normal(size=(n_samples, n_features)), scales[labels])
    return means[labels] + noise + offset, labels


def sklearn_start(X, n_components, covariance_type, seed=1):
    """Initial parameters from two EM iterations of scikit-learn (a realistic start)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(n_components, covariance_type=covariance_type, random_state=seed, max_iter=2).fit(X)
    return {"weights_init": gm.weights_, "means_init": gm.means_, "precisions_init": gm.precisions_}


@pytest.fixture
def blobs():
    return mixture_data()
