"""Adding a mixture: a Gaussian mixture whose components keep equal weights.

A mixture on streamem's EM core is a *model* — an object with ``estep``, ``objective``,
``mstep``, ``to_vector``, ``from_vector`` and ``reg_covar``
(``streamem.engine.contract.MixtureModel``) — and an estimator that hands it to the EM loop.
Here the model is the Gaussian one with another M-step: every weight held at 1/K (the
clusters are assumed to be of one size, as k-means assumes). Everything else comes with
the estimator it derives from: the passes over chunked data, the starts, acceleration and
the stopping rule, checkpoints, ``save`` and ``streamem.load``, ``select_n_components``,
ONNX export. Defining the class registers it under its ``model_name``; a package that
declares it as an entry point of the group ``streamem.models`` makes it known to the
command line too (``streamem fit --model equal-weights``)::

    [project.entry-points."streamem.models"]
    equal-weights = "adding_a_mixture:EqualWeightsMixture"

Fits two clusters of 9:1 sizes both ways and prints the weights each finds.

    python examples/adding_a_mixture.py
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import streamem
from streamem.engine.em import GaussianModel


def _equal_weights(params):
    """The same parameters with their components' weight shared out equally (a noise
    component, if any, keeps its own)."""
    K = params.n_components
    return dataclasses.replace(params, weights=np.full(K, params.weights.sum() / K))


@dataclasses.dataclass(frozen=True, eq=False)
class EqualWeightsModel(GaussianModel):
    """The Gaussian mixture's E-step and objective; an M-step that holds the weights equal.

    With the weights fixed, the means and covariances that maximise the expected
    log-likelihood are the Gaussian M-step's, so the M-step is that one's with its weights
    replaced. ``from_vector`` does the same to an extrapolated point, so that acceleration
    stays within the model.
    """

    def mstep(self, stats, params):
        new, moves = super().mstep(stats, params)
        return _equal_weights(new), moves

    def from_vector(self, vector, like):
        return _equal_weights(super().from_vector(vector, like))


class EqualWeightsMixture(streamem.GaussianMixture):
    """A Gaussian mixture of components of equal weights, fitted as
    :class:`streamem.GaussianMixture` fits (same parameters, same attributes)."""

    model_name = "equal-weights"
    model_class = EqualWeightsModel


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n_small = args.n_samples // 10
    X = np.concatenate([rng.normal(0.0, 1.0, (args.n_samples - n_small, 2)), rng.normal(2.5, 1.0, (n_small, 2))])
    for estimator in (streamem.GaussianMixture, EqualWeightsMixture):
        model = estimator(2, random_state=args.seed).fit(X)
        order = np.argsort(model.means_[:, 0])
        print(
            f"{estimator.__name__:>20}: weights {np.round(model.weights_[order], 3).tolist()}, "
            f"means {np.round(model.means_[order], 2).tolist()}, {model.n_passes_} passes"
        )


if __name__ == "__main__":
    main()
