"""Exactness on hard data: streamem and scikit-learn against a direct computation.

Run by hand (not collected by the test run)::

    python tests/benchmarks/bench_numerics.py

For every case of the catalogue in ``tests/test_numerics.py``, every covariance type and
both dtypes, both libraries fit 15 EM iterations from the same initial parameters, and
each is compared with the direct computation written there (every component's rows minus
its own mean, in float64). The error is the largest of: the weights' error, the means'
error in standard deviations of their component, and the covariances' error relative to
``sqrt(var_i var_j)``. Prints Markdown tables.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.test_numerics import CASES, _start, errors, fit, reference_em, summary  # noqa: E402

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def measure(model_class, X, start, covariance_type, reference) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = fit(model_class, X, start, covariance_type)
    except ValueError:
        return "ValueError"
    if not all(np.isfinite(part).all() for part in summary(model, covariance_type)):
        return "NaN"
    return f"{max(errors(*summary(model, covariance_type), reference)):.0e}"


def main():
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    import streamem

    for dtype in (np.float64, np.float32):
        print(f"\n{np.dtype(dtype).name} data: largest error against the direct computation, scikit-learn / streamem\n")
        print("| case | " + " | ".join(COVARIANCE_TYPES) + " |")
        print("|---|" + "---|" * len(COVARIANCE_TYPES))
        for case, make in CASES.items():
            X, labels = make()
            X = X.astype(dtype)
            exact = X.astype(np.float64)
            cells = []
            for covariance_type in COVARIANCE_TYPES:
                start = _start(exact, labels, covariance_type)
                reference = reference_em(exact, start, covariance_type)
                sk = measure(SkGaussianMixture, exact, start, covariance_type, reference)
                ours = measure(streamem.GaussianMixture, X, start, covariance_type, reference)
                cells.append(f"{sk} / {ours}")
            print(f"| {case} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
