"""The parameters of a Gaussian mixture, frozen: each EM iteration makes a new one from the
reduced sufficient statistics (:func:`~streamem.core.mstep.m_step`).

Precisions are kept as their Cholesky factors, so that the log-determinant is a sum of logs
of a diagonal and the log-density never inverts a matrix (:mod:`streamem.core.kernels`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from streamem.core.covariance import Covariance, get_covariance
from streamem.core.kernels import LogProbKernel, NoiseKernel

__all__ = ["CollapsedComponentWarning", "InitialParameters", "MixtureParams", "NoisyParams"]

EPS = float(np.finfo(np.float64).eps)
#: a small component whose variance in some direction is below this share of the components'
#: pooled variance, or of the mixture's total variance, in that direction has collapsed
#: (:meth:`MixtureParams.collapsed`)
SPURIOUS_SQUEEZE = 1e-3
#: a component of a weight below this is small
SPURIOUS_WEIGHT = 0.05


def _squeeze(covariances: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each covariance's (``(K, D, D)``) smallest variance in any direction over the
    ``reference`` covariance's in that direction: its smallest eigenvalue in the coordinates
    that whiten ``reference`` (:class:`numpy.linalg.LinAlgError` if it is singular)."""
    white = np.linalg.inv(np.linalg.cholesky(reference))
    return np.linalg.eigvalsh(white @ covariances @ white.T)[:, 0]


class CollapsedComponentWarning(UserWarning):
    """A fit ended with a collapsed component (:meth:`MixtureParams.collapsed`)."""


class InitialParameters(NamedTuple):
    """The initial parameters a user gave, each None when not given."""

    weights: np.ndarray | None
    means: np.ndarray | None
    precisions_chol: np.ndarray | None


@dataclasses.dataclass(frozen=True, eq=False)
class MixtureParams:
    """Weights, means and covariances of a Gaussian mixture.

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray, shape given by the covariance type
    precisions_chol : ndarray, shape given by the covariance type
    covariance_type : {"full", "tied", "diag", "spherical"}
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_chol: np.ndarray
    covariance_type: str

    @classmethod
    def from_covariances(cls, weights, means, covariances, covariance_type: str) -> MixtureParams:
        covariance = get_covariance(covariance_type)
        covariances = np.asarray(covariances, dtype=np.float64)
        return cls(
            np.asarray(weights, dtype=np.float64),
            np.asarray(means, dtype=np.float64),
            covariances,
            covariance.precisions_chol(covariances),
            covariance_type,
        )

    @classmethod
    def from_precisions_chol(cls, weights, means, precisions_chol, covariance_type: str) -> MixtureParams:
        covariance = get_covariance(covariance_type)
        precisions_chol = np.asarray(precisions_chol, dtype=np.float64)
        return cls(
            np.asarray(weights, dtype=np.float64),
            np.asarray(means, dtype=np.float64),
            covariance.covariances_from_precisions_chol(precisions_chol),
            precisions_chol,
            covariance_type,
        )

    def affine(self, offset, scale) -> MixtureParams:
        """The same mixture for ``offset + scale * x`` (``offset`` and positive ``scale`` of
        shape (n_features,)): standardised parameters back in the data's units, or the
        reverse with ``-mean / scale`` and ``1 / scale``."""
        covariances, precisions_chol = get_covariance(self.covariance_type).scaled(
            self.covariances, self.precisions_chol, scale
        )
        params = MixtureParams(
            self.weights, offset + scale * self.means, covariances, precisions_chol, self.covariance_type
        )
        if isinstance(self, NoisyParams):
            return NoisyParams.of(params, self.noise_weight, offset + scale * self.box)
        return params

    def to_arrays(self, prefix: str = "") -> dict:
        """The parameters as arrays named ``prefix`` + ``weights``, ``means``, ``covariances``
        and ``precisions_cholesky`` (as saved models and checkpoints hold them)."""
        return {
            f"{prefix}weights": self.weights,
            f"{prefix}means": self.means,
            f"{prefix}covariances": self.covariances,
            f"{prefix}precisions_cholesky": self.precisions_chol,
        }

    @classmethod
    def from_arrays(cls, arrays: dict, covariance_type: str, prefix: str = "") -> MixtureParams:
        """The parameters back from :meth:`to_arrays`, their shapes checked."""
        means = arrays[f"{prefix}means"]
        if means.ndim != 2:
            raise ValueError(f"{prefix}means has shape {means.shape}")
        K, D = means.shape
        expected = get_covariance(covariance_type).covariance_shape(K, D)
        for name, shape in (("weights", (K,)), ("covariances", expected), ("precisions_cholesky", expected)):
            if arrays[prefix + name].shape != shape:
                raise ValueError(f"{prefix}{name} has shape {arrays[prefix + name].shape}, expected {shape}")
        params = MixtureParams(
            arrays[f"{prefix}weights"],
            means,
            arrays[f"{prefix}covariances"],
            arrays[f"{prefix}precisions_cholesky"],
            covariance_type,
        )
        if f"{prefix}noise_weight" in arrays:  # with a noise component
            return NoisyParams.of(params, float(arrays[f"{prefix}noise_weight"][0]), arrays[f"{prefix}noise_box"])
        return params

    @property
    def covariance(self) -> Covariance:
        return get_covariance(self.covariance_type)

    #: whether the parameters include a uniform noise component (:class:`NoisyParams`)
    has_noise = False

    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def precisions(self) -> np.ndarray:
        return self.covariance.precisions(self.precisions_chol)

    @property
    def full_covariances(self) -> np.ndarray:
        """Every component's covariance as a full matrix, array of shape (K, D, D)."""
        return self.covariance.full_covariances(self.covariances, *self.means.shape)

    def log_density_of_mahalanobis(self, distances: np.ndarray, log_det: np.ndarray) -> np.ndarray:
        """Each component's log-density at rows of squared Mahalanobis ``distances`` (K, n),
        with ``log_det`` (K,) the log-determinants of its precisions' Cholesky factors."""
        return log_det[:, None] - 0.5 * (self.n_features * np.log(2 * np.pi) + distances)

    def with_components(self, weights, means, covariances, origin) -> MixtureParams:
        """New components of the same kind (a split-and-merge move's), each component's
        other parameters from the component ``origin`` gives (none for a Gaussian)."""
        return MixtureParams.from_covariances(weights, means, covariances, self.covariance_type)

    def collapsed(self, n_rows: float, reg_covar: float = 0.0) -> int:
        """How many components have collapsed: a spurious maximum, whose likelihood grows
        without bound as a component shrinks onto a few rows, or onto rows that share a
        value (McLachlan & Peel 2000, 3.10). A component has collapsed when

        - its weight gives it fewer than twice the rows its covariance needs
          (``n_features + 1`` for full, 2 for diag and spherical, 1 for tied) of ``n_rows``;
        - or its variance in some direction is below :data:`SPURIOUS_SQUEEZE` times the
          components' pooled variance in that direction (the smallest eigenvalue of its
          covariance in the coordinates that whiten their weighted mean), and it is small
          (a weight below :data:`SPURIOUS_WEIGHT`: a small weight and a small variance) or
          its own smallest variance is ``reg_covar``'s floor (below twice it: its rows
          share a value in some direction, as rounded data's do);
        - or its variance in some direction is below :data:`SPURIOUS_SQUEEZE` times the
          mixture's total variance in that direction (the data's, at a fixed point of EM),
          and its weight gives it fewer than four times the rows its covariance needs: beside
          many tight components the pooled variance is small too, and a component of a few
          rows that lie close to a line or plane (rounded data again) passes the rule above
          (iris, eight full components: 13 rows, 2e-4 times the data's variance in some
          direction, 7e-3 times the pooled).
        """
        K, D = self.means.shape
        needed = 2 * {"full": D + 1, "tied": 1}.get(self.covariance_type, 2)
        few = self.weights * n_rows < needed
        if self.covariance_type == "tied":  # a tied covariance collapses for all or none
            return int(few.sum())
        full = self.full_covariances
        pooled = np.einsum("k,kij->ij", self.weights, full)
        centred = self.means - self.weights @ self.means
        total = pooled + np.einsum("k,ki,kj->ij", self.weights, centred, centred)
        try:
            squeezed, thin = (_squeeze(full, reference) < SPURIOUS_SQUEEZE for reference in (pooled, total))
        except np.linalg.LinAlgError:
            return int(few.sum())
        # the component's own smallest variance, in the data's coordinates
        floored = np.linalg.eigvalsh(full)[:, 0] < 2.0 * reg_covar
        small = self.weights < SPURIOUS_WEIGHT
        return int((few | (squeezed & (small | floored)) | (thin & (self.weights * n_rows < 2 * needed))).sum())

    def n_parameters(self) -> int:
        """Number of free parameters (for BIC and AIC)."""
        n_components, n_features = self.means.shape
        cov_params = self.covariance.n_parameters(n_components, n_features)
        return int(cov_params + n_components * n_features + n_components - 1)

    def information_criteria(
        self, log_likelihood: float, n_samples: float, n_parameters: int | None = None
    ) -> tuple[float, float]:
        """BIC and AIC from a total log-likelihood over ``n_samples`` (lower is better), with
        ``n_parameters`` free parameters (default :meth:`n_parameters`)."""
        n_parameters = self.n_parameters() if n_parameters is None else n_parameters
        return (
            float(-2 * log_likelihood + n_parameters * np.log(n_samples)),
            float(-2 * log_likelihood + 2 * n_parameters),
        )

    def to_vector(self) -> np.ndarray:
        """The parameters as one unconstrained vector, for extrapolating EM's steps
        (:mod:`streamem.engine.accelerate`): the weights' logs, the means, and the precision Cholesky
        factors with the logs of their diagonal (:meth:`Covariance.chol_to_free`). Every
        vector maps back to valid parameters (:meth:`from_vector`)."""
        free_chol = self.covariance.chol_to_free(self.precisions_chol)
        return np.concatenate([_log(self.weights), self.means.ravel(), free_chol])

    def from_vector(self, vector: np.ndarray) -> MixtureParams:
        """Parameters of the same shapes from a :meth:`to_vector` vector: weights by softmax."""
        K, D = self.means.shape
        weights = _softmax(vector[:K])
        return self._from_parts(weights, vector[K : K + K * D].reshape(K, D), vector[K + K * D :])

    def _from_parts(self, weights, means, free_chol) -> MixtureParams:
        covariance = self.covariance
        chol = covariance.chol_from_free(free_chol, self.precisions_chol.shape)
        return MixtureParams(
            weights, means, covariance.covariances_from_precisions_chol(chol), chol, self.covariance_type
        )

    def kernel(self, dtype, centre=None) -> LogProbKernel | NoiseKernel:
        """Constants for evaluating log-densities of rows of ``dtype`` (see :class:`LogProbKernel`);
        ``centre``, of shape (n_features,), is tried first as the centre of the components
        (candidates of one pass given the same centre share the features of a block)."""
        return LogProbKernel(self, dtype, centre)


def _log(values: np.ndarray) -> np.ndarray:
    """Logs of non-negative values, zeros as the log of the smallest normal number."""
    return np.log(np.maximum(values, np.finfo(np.float64).tiny))


def _softmax(logs: np.ndarray) -> np.ndarray:
    weights = np.exp(logs - logs.max())
    return weights / weights.sum()


@dataclasses.dataclass(frozen=True, eq=False)
class NoisyParams(MixtureParams):
    """A Gaussian mixture plus a uniform noise component over a box (mclust's ``Vinv``): the
    Gaussians' ``weights`` sum to ``1 - noise_weight``.

    Attributes
    ----------
    noise_weight : float
    box : ndarray of shape (2, n_features)
        The lowest and highest values of each feature: the noise density is one over the
        box's volume inside it.
    """

    noise_weight: float = 0.0
    box: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((2, 0)))

    has_noise = True

    @classmethod
    def of(cls, params: MixtureParams, noise_weight: float, box) -> NoisyParams:
        return cls(
            params.weights,
            params.means,
            params.covariances,
            params.precisions_chol,
            params.covariance_type,
            float(noise_weight),
            np.asarray(box, dtype=np.float64),
        )

    @property
    def log_noise_density(self) -> float:
        r""":math:`\log(1 / V)`, the box's volume :math:`V`."""
        return float(-np.log(self.box[1] - self.box[0]).sum())

    def kernel(self, dtype, centre=None) -> NoiseKernel:
        with np.errstate(divide="ignore"):
            log_noise = np.log(self.noise_weight) + self.log_noise_density
        return NoiseKernel(LogProbKernel(self, dtype, centre), log_noise)

    def to_vector(self) -> np.ndarray:
        """:meth:`MixtureParams.to_vector` with the noise weight's log first (the box is fixed)."""
        return np.concatenate([_log(np.array([self.noise_weight])), super().to_vector()])

    def from_vector(self, vector: np.ndarray) -> NoisyParams:
        K, D = self.means.shape
        weights = _softmax(vector[: K + 1])
        params = self._from_parts(weights[1:], vector[K + 1 : K + 1 + K * D].reshape(K, D), vector[K + 1 + K * D :])
        return NoisyParams.of(params, weights[0], self.box)

    def to_arrays(self, prefix: str = "") -> dict:
        return {
            **super().to_arrays(prefix),
            f"{prefix}noise_weight": np.array([self.noise_weight]),
            f"{prefix}noise_box": self.box,
        }

    def n_parameters(self) -> int:
        return super().n_parameters() + 1
