"""Fitting data with holes, and filling them in.

Wine measurements bundled with scikit-learn (178 wines, 13 chemical measurements,
standardised), with a fraction ``--missing`` of the values removed at random. A mixture
fitted with ``missing="marginalize"`` (exact EM on the observed values) imputes each hole
by its conditional expectation under the mixture. The error is compared with filling in
column means, and the fitted means with those of a fit on the complete data.

    python examples/impute_missing_values.py                # ~3 s
    python examples/impute_missing_values.py --missing 0.3
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import streamem


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--missing", type=float, default=0.15, help="fraction of values removed")
    parser.add_argument("--n-components", type=int, default=3)
    args = parser.parse_args(argv)
    X = StandardScaler().fit_transform(load_wine().data)
    rng = np.random.default_rng(0)
    holes = rng.random(X.shape) < args.missing
    Xm = np.where(holes, np.nan, X)
    print(
        f"{holes.sum()} of {X.size} values removed ({holes.mean():.0%}); "
        f"{np.isnan(Xm).any(axis=1).mean():.0%} of the rows have a hole"
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        complete = streamem.GaussianMixture(args.n_components, covariance_type="diag", n_init=4, random_state=0)
        complete.fit(X)
        gm = streamem.GaussianMixture(
            args.n_components, covariance_type="diag", n_init=4, random_state=0, missing="marginalize", max_iter=500
        )
        gm.fit(Xm)
    filled = gm.impute(Xm)
    column_means = np.where(holes, np.nanmean(Xm, axis=0), Xm)
    rmse_mixture = np.sqrt(np.mean((filled - X)[holes] ** 2))
    rmse_means = np.sqrt(np.mean((column_means - X)[holes] ** 2))
    print(f"imputation error (RMSE, standardised units): mixture {rmse_mixture:.3f}, column means {rmse_means:.3f}")
    order = [int(np.argmin(np.abs(gm.means_ - m).sum(axis=1))) for m in complete.means_]
    drift = np.abs(gm.means_[order] - complete.means_).max()
    print(f"largest difference between the means fitted with and without holes: {drift:.3f}")
    print(f"mean log-likelihood of the observed values: {gm.score(Xm):.4f}")
    return rmse_mixture, rmse_means


if __name__ == "__main__":
    main()
