"""The parameters of a Gaussian mixture, its log-densities, and the M-step.

A :class:`MixtureParams` is frozen: each EM iteration makes a new one from the reduced
sufficient statistics (:func:`m_step`). Precisions are kept as their Cholesky factors,
so that the log-determinant is a sum of logs of a diagonal and the log-density never
inverts a matrix.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from .covariance import Covariance, get_covariance

__all__ = [
    "Evaluation",
    "Group",
    "InitialParameters",
    "LogProbKernel",
    "MixtureParams",
    "NoiseKernel",
    "NoisyParams",
    "responsibilities_inplace",
    "m_step",
    "plan_groups",
    "reach",
]

LOG_2PI = float(np.log(2.0 * np.pi))
EPS = float(np.finfo(np.float64).eps)
#: a small component whose variance in some direction is below this share of the components'
#: pooled variance in that direction has collapsed (:meth:`MixtureParams.collapsed`)
SPURIOUS_SQUEEZE = 1e-3
#: a component of a weight below this is small
SPURIOUS_WEIGHT = 0.05


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
        params = MixtureParams(self.weights, offset + scale * self.means, covariances, precisions_chol,
                               self.covariance_type)  # fmt: skip
        return NoisyParams.of(params, self.noise_weight, offset + scale * self.box) if self.has_noise else params

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
        params = MixtureParams(arrays[f"{prefix}weights"], means, arrays[f"{prefix}covariances"],
                               arrays[f"{prefix}precisions_cholesky"], covariance_type)  # fmt: skip
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
          share a value in some direction, as rounded data's do).
        """
        K, D = self.means.shape
        needed = 2 * {"full": D + 1, "tied": 1}.get(self.covariance_type, 2)
        few = self.weights * n_rows < needed
        if self.covariance_type == "tied":  # a tied covariance collapses for all or none
            return int(few.sum())
        full = self.full_covariances
        pooled = np.einsum("k,kij->ij", self.weights, full)
        try:
            white = np.linalg.inv(np.linalg.cholesky(pooled))
        except np.linalg.LinAlgError:
            return int(few.sum())
        values, vectors = np.linalg.eigh(white @ full @ white.T)
        squeezed = values[:, 0] < SPURIOUS_SQUEEZE
        # the component's own smallest variance, in the data's coordinates
        floored = np.linalg.eigvalsh(full)[:, 0] < 2.0 * reg_covar
        return int((few | (squeezed & ((self.weights < SPURIOUS_WEIGHT) | floored))).sum())

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
        (:mod:`streamem.accelerate`): the weights' logs, the means, and the precision Cholesky
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
        return MixtureParams(weights, means, covariance.covariances_from_precisions_chol(chol), chol,
                             self.covariance_type)  # fmt: skip

    def kernel(self, dtype, centre=None) -> LogProbKernel:
        """Constants for evaluating log-densities of rows of ``dtype`` (see :class:`LogProbKernel`);
        ``centre``, of shape (n_features,), is tried first as the centre of the components
        (candidates of one pass given the same centre share the features of a block)."""
        return LogProbKernel(self, dtype, centre)


#: values held by the temporaries of a block of rows: a few MiB (fewer, larger numpy calls
#: between threads)
BLOCK_ELEMENTS = 1 << 20

#: rounding allowed to a component per work precision: unit roundoff times its reach
#: about the centre of its group (:func:`reach`) stays below this
ROUNDING = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
_FEATURE_COST = 8  # forming a group's features costs about a GEMM of this many components


def _log(values: np.ndarray) -> np.ndarray:
    """Logs of non-negative values, zeros as the log of the smallest normal number."""
    return np.log(np.maximum(values, np.finfo(np.float64).tiny))


def _softmax(logs: np.ndarray) -> np.ndarray:
    weights = np.exp(logs - logs.max())
    return weights / weights.sum()


def reach(params: MixtureParams, centre: np.ndarray) -> np.ndarray:
    r"""How large, against its own spread, each component's rows are about ``centre``.

    With :math:`h_i = \sqrt{(\mu_{ki} - c_i)^2 + \Sigma_{k,ii}}` (the root mean square of
    the component's rows about the centre, per feature), the reach of component :math:`k` is
    the largest row sum of :math:`|\Lambda_k| \circ h h^T`. The packed terms of a log-density
    about the centre, and the second moments the E-step adds about it, are that large
    against the component's own (unit) scale: rounding them in a precision of unit roundoff
    :math:`u` moves a log-density, and a covariance relative to itself, by about
    :math:`u \times` reach. It is at least 1, and scale-free in each feature.

    Returns an array of shape (n_components,).
    """
    K, D = params.means.shape
    covariance = params.covariance
    h = np.sqrt((params.means - centre) ** 2 + covariance.variances(params.covariances, K, D))
    return (covariance.abs_precision_product(params.precisions_chol, h) * h).max(axis=1)


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
    box: np.ndarray | None = None

    has_noise = True

    @classmethod
    def of(cls, params: MixtureParams, noise_weight: float, box) -> NoisyParams:
        return cls(params.weights, params.means, params.covariances, params.precisions_chol, params.covariance_type,
                   float(noise_weight), np.asarray(box, dtype=np.float64))  # fmt: skip

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
        return {**super().to_arrays(prefix), f"{prefix}noise_weight": np.array([self.noise_weight]),
                f"{prefix}noise_box": self.box}  # fmt: skip

    def n_parameters(self) -> int:
        return super().n_parameters() + 1


class NoiseKernel:
    """A :class:`LogProbKernel` whose weighted log-densities have one more row, last: the
    noise component's constant ``log_noise`` (log weight plus log density)."""

    def __init__(self, kernel: LogProbKernel, log_noise: float):
        self.inner, self.log_noise = kernel, log_noise
        self.groups, self.shift, self.dtype = kernel.groups, kernel.shift, kernel.dtype
        self.block_width = kernel.block_width + 1

    def _with_noise(self, weighted: np.ndarray) -> np.ndarray:
        out = np.empty((weighted.shape[0] + 1, weighted.shape[1]), dtype=weighted.dtype)
        out[:-1] = weighted
        out[-1] = self.log_noise
        return out

    def evaluate(self, block: np.ndarray, cache: dict | None = None) -> Evaluation:
        evaluation = self.inner.evaluate(block, cache)
        return Evaluation(self._with_noise(evaluation.weighted), evaluation.parts)

    def log_prob(self, block: np.ndarray) -> np.ndarray:
        return self._with_noise(self.inner.log_prob(block))

    def group_values(self, values: np.ndarray, index: int, rows: np.ndarray | None) -> np.ndarray:
        return self.inner.group_values(values, index, rows)


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
    """Components whose log-densities and statistics are computed about one centre.

    Attributes
    ----------
    components : ndarray of int, sorted
    centre : ndarray of shape (n_features,)
        Exactly representable in ``dtype`` (rows minus the centre are formed in ``dtype``).
    dtype : numpy dtype
        The work precision of the group's features and matrix products.
    form : ndarray of shape (len(components), n_features_of_a_row)
        The weighted log-densities are ``form @ features``.
    """

    components: np.ndarray
    centre: np.ndarray
    dtype: np.dtype
    form: np.ndarray


def plan_groups(params: MixtureParams, dtype, centre) -> list[tuple[np.ndarray, np.ndarray, np.dtype]]:
    """Components grouped by a shared centre and work precision, as ``(components, centre,
    dtype)``: every component's rounding (:func:`reach`) stays within :data:`ROUNDING`.

    ``centre`` is tried first, in the data's precision, then in float64; components that
    fit neither take the mean of the heaviest of them as the next centre, and so on. For
    float32 data, a plan of float64 groups alone is taken instead when it costs less (many
    components, each far from the others against its own spread). A component that fits no
    precision even about its own mean (a nearly singular covariance) is evaluated alone
    about its mean in float64.
    """
    dtype = np.dtype(dtype)
    precisions = [dtype] if dtype == np.float64 else [dtype, np.dtype(np.float64)]
    plan = _greedy_groups(params, precisions, centre)
    if len(plan) == 1 or len(precisions) == 1:  # one group in the data's precision costs least
        return plan
    return min([plan, _greedy_groups(params, precisions[1:], centre)], key=_plan_cost)


def _plan_cost(plan) -> float:
    return sum(work.itemsize * (_FEATURE_COST + 2 * len(components)) for components, _, work in plan)


def _greedy_groups(params, precisions, centre):
    pending = np.argsort(-params.weights, kind="stable")
    groups = []
    while pending.size:
        for work in precisions:
            at = np.asarray(centre, dtype=work).astype(np.float64)
            fits = np.finfo(work).eps * reach(params, at)[pending] <= ROUNDING[work]
            if fits.any():
                break
        else:  # not even about its own mean: as good as it gets
            work, at = np.dtype(np.float64), params.means[pending[0]]
            fits = np.arange(len(pending)) == 0
        groups.append((np.sort(pending[fits]), at, work))
        pending = pending[~fits]
        if pending.size:
            centre = params.means[pending[0]]
    return groups


#: a component is left out of a row when its log-density there is surely this far below the
#: row's best: its responsibility is then below e^-50 (and so is its share of any moment)
NEGLIGIBLE = 50.0


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluation:
    """The weighted log-densities of a block, and what the statistics need of each group.

    Attributes
    ----------
    weighted : ndarray of shape (n_components, n_rows)
        ``log w_k + log N(x | mu_k, Sigma_k)``, its rows in the kernel's order (the groups'
        components one group after the other: ``LogProbKernel.order``); ``-inf`` where a
        component of a group other than the first is negligible for the row.
    parts : list of (int, ndarray of int or None, ndarray)
        For each group evaluated on some rows: its index in ``LogProbKernel.groups``, those
        rows (None: every row of the block), and their features about the group's centre,
        of shape (n_values, n_rows).
    """

    weighted: np.ndarray
    parts: list


class LogProbKernel:
    r"""Weighted log-densities ``log w_k + log N(x | mu_k, Sigma_k)`` for blocks of rows.

    .. math::
        \log w_k - \tfrac{D}{2}\log 2\pi + \log|L_k| - \tfrac12 \|L_k^T (x - \mu_k)\|^2

    where :math:`L_k` is the Cholesky factor of the precision of component :math:`k`.
    Components go in groups (:func:`plan_groups`), each with a centre near its components
    and a work precision: for a group, a block's rows minus its centre give the packed
    features, and one GEMM the log-densities of all its components. The first group (on
    ordinary data, every component, about the given centre, in the data's precision) is
    evaluated on every row. Another group is evaluated only on the rows where it may
    matter: the same GEMM as the first group's gives its log-densities from the first
    group's features, approximately (their rounding is what the group avoids), and the
    squared norm of each row about the first centre, which bounds that rounding:
    :math:`\gamma\,(|a_0| + \|a\|\,\|z\| + \tfrac12 \|\,|\Lambda_k|\,\| \|z\|^2)` for the form
    :math:`a` of component :math:`k`. A row whose approximation plus that bound falls
    :data:`NEGLIGIBLE` below the first group's best gets ``-inf`` there (a responsibility
    below e^-50); the others are evaluated about the group's centre. So a few far or tight
    components cost one more row of the GEMM and the rows near them.

    Attributes
    ----------
    groups : list of Group
    order : ndarray of int
        The components as the rows of :attr:`Evaluation.weighted`: each group's, in turn.
    shift : ndarray of shape (n_components, n_features)
        The centre of each component's group: the E-step's statistics are taken about it.
    dtype : numpy dtype
        The precision of the (n_components, n_rows) log-densities.
    """

    def __init__(self, params: MixtureParams, dtype, centre=None):
        covariance = params.covariance
        self.covariance = covariance
        K, D = params.means.shape
        centre = params.weights @ params.means if centre is None else np.asarray(centre, dtype=np.float64)
        with np.errstate(divide="ignore"):
            log_weights = np.log(params.weights)
        constant = log_weights + covariance.log_det_chol(params.precisions_chol, D) - 0.5 * D * LOG_2PI

        def forms(at):  # weighted log-densities = forms @ features about ``at``
            form = -0.5 * covariance.mahalanobis_form(params.means - at, params.precisions_chol)
            form[:, 0] += constant  # the features' row of ones
            return form

        plan = plan_groups(params, dtype, centre)
        self.groups = [Group(components, at, work, forms(at)[components].astype(work)) for components, at, work in plan]
        self.shift = np.empty((K, D))
        for group in self.groups:
            self.shift[group.components] = group.centre
        self.order = np.concatenate([group.components for group in self.groups])
        self.identity = len(self.groups) == 1
        ends = np.cumsum([len(group.components) for group in self.groups])
        self.slices = [slice(stop - len(group.components), stop) for group, stop in zip(self.groups, ends)]
        self.dtype = np.result_type(*(group.dtype for group in self.groups))
        self.n_components = K
        self._buffers = {}
        if not self.identity:
            self._bound_far_groups(params, forms(self.groups[0].centre))

    def _bound_far_groups(self, params, form):
        """What bounds the other groups' log-densities from the first group's features: their
        forms about the first centre (``form``, of every component) stacked under the first
        group's, so that one GEMM gives their approximate values; a row giving the squared
        norm of the rows about that centre; and the coefficients of the approximations'
        rounding bound."""
        covariance, first = self.covariance, self.groups[0]
        K, D = params.means.shape
        unit = covariance.precisions_chol(covariance.add_to_diagonal(np.zeros(covariance.covariance_shape(1, D)), 1.0))
        norm = covariance.mahalanobis_form(np.zeros((1, D)), unit)
        self._stacked = np.concatenate([form[self.order], norm]).astype(first.dtype)
        # |rounding of form_k @ features| <= gamma (|a_0| + ||a_linear|| ||z|| + rho_k ||z||^2 / 2) for z
        # the row about the first centre and rho_k >= the spectral norm of |Lambda_k|: the
        # error of a dot product of F terms, of the cast of the form and of forming the features
        gamma = 2.0 * (form.shape[1] + 4) * float(np.finfo(first.dtype).eps)
        rho = covariance.abs_precision_product(params.precisions_chol, np.ones((K, D))).max(axis=1)
        with np.errstate(over="ignore"):  # precisions near 1e300 (reg_covar=0): such groups get no bound
            coefficients = gamma * np.column_stack([np.abs(form[:, 0]), np.linalg.norm(form[:, 1 : 1 + D], axis=1),
                                                    0.5 * rho])  # fmt: skip
        finite = np.isfinite(self._stacked[:K]).all(axis=1) & np.isfinite(coefficients).all(axis=1)
        # per group: the coefficients, as columns, or None where the cast overflowed (no bound)
        self._error = [None] + [
            tuple(c[:, None] for c in coefficients[group.components].T) if finite[s].all() else None
            for group, s in zip(self.groups[1:], self.slices[1:])
        ]
        self._norm_rounding = 1.0 + gamma

    @property
    def block_width(self) -> int:
        """Values per row held by a block's temporaries (to size blocks): the first group's
        features and the (n_components, n_rows) arrays; the other groups' features are those
        of the rows near them, usually a few."""
        return self.groups[0].form.shape[1] + 2 * self.n_components

    def _features(self, rows: np.ndarray, group: Group, cache: dict | None = None) -> np.ndarray:
        key = (self.covariance.name, group.dtype.str, group.centre.tobytes())
        if cache is not None and key in cache:
            return cache[key]
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape[1] < len(rows):
            buffer = self._buffers[key] = np.empty((group.form.shape[1], len(rows)), dtype=group.dtype)
        features = self.covariance.centred_features(rows, group.centre, group.dtype, out=buffer[:, : len(rows)])
        if cache is not None:
            cache[key] = features
        return features

    def evaluate(self, block: np.ndarray, cache: dict | None = None) -> Evaluation:
        """The weighted log-densities of a block of rows (n_rows, n_features), in the
        kernel's order, and each group's rows and features. Kernels given the same
        ``cache`` (a dict, one per block) share the features of the first group when alike."""
        first = self.groups[0]
        features = self._features(block, first, cache)
        if self.identity:
            return Evaluation(first.form @ features, [(0, None, features)])
        K, n = self.n_components, len(block)
        stacked = np.matmul(self._stacked, features)  # the first group's, the others' approximations, ||z||^2
        weighted = stacked[:K] if stacked.dtype == self.dtype else stacked[:K].astype(self.dtype)
        threshold = weighted[self.slices[0]].max(axis=0).astype(np.float64) - NEGLIGIBLE
        norm2 = stacked[K].astype(np.float64) * self._norm_rounding
        norm = np.sqrt(norm2)
        parts = [(0, None, features)]
        for index in range(1, len(self.groups)):
            part, error = weighted[self.slices[index]], self._error[index]
            if error is None:
                near = np.arange(n)
            else:
                with np.errstate(invalid="ignore", over="ignore"):
                    bound = part.astype(np.float64) + (error[0] + error[1] * norm + error[2] * norm2)
                near = np.flatnonzero(~(bound < threshold).all(axis=0))  # NaN (overflow) counts as near
            part.fill(-np.inf)
            if near.size:
                group = self.groups[index]
                group_features = self._features(block[near], group)
                part[:, near] = group.form @ group_features
                parts.append((index, near, group_features))
        return Evaluation(weighted, parts)

    def log_prob(self, block: np.ndarray) -> np.ndarray:
        """The weighted log-densities of a block of rows, array of shape (n_components,
        n_rows) in the components' order."""
        weighted = self.evaluate(block).weighted
        if self.identity:
            return weighted
        out = np.empty_like(weighted)
        out[self.order] = weighted
        return out

    def group_values(self, values: np.ndarray, index: int, rows: np.ndarray | None) -> np.ndarray:
        """The entries of a (n_components, n_rows) array in the kernel's order that belong to
        group ``index`` and to ``rows`` (None: every row), in the group's precision.

        For the first group, every component's entries, its own first: a product of the
        first group's features with them costs what it costs on ordinary data (one group),
        and in OpenBLAS less than with a slice of them that is not a multiple of its
        kernel's height; the rows of other groups are left out of the result."""
        group = self.groups[index]
        part = values if index == 0 else values[self.slices[index]]
        if rows is not None:
            part = part[:, rows]
        return part.astype(group.dtype, copy=False)


def responsibilities_inplace(weighted_log_prob: np.ndarray) -> np.ndarray:
    """Turn weighted log-densities of shape (n_components, n_rows) into responsibilities,
    in place; return log p(x) of shape (n_rows,).

    A log-sum-exp over components that keeps the exponentials it computes, since the
    responsibilities are exactly those exponentials normalised (``scipy.special.logsumexp``
    would compute them and throw them away).
    """
    top = weighted_log_prob.max(axis=0)
    weighted_log_prob -= top
    np.exp(weighted_log_prob, out=weighted_log_prob)
    total = weighted_log_prob.sum(axis=0)
    weighted_log_prob *= np.reciprocal(total)  # a multiplication is several times faster than a division
    np.log(total, out=total)
    total += top
    return total


#: the parameters ``freeze`` can hold at their initial values
FREEZABLE = ("weights", "means", "covariances")


def m_step(
    stats, covariance_type: str, reg_covar: float, prior=None, freeze=(), current: MixtureParams | None = None,
    cholesky: bool = True,
) -> tuple[MixtureParams, list[int]]:
    """New parameters from reduced sufficient statistics.

    .. math::
        n_k = \\sum_i w_i r_{ik},\\quad \\mu_k = c_k + \\frac{1}{n_k}\\sum_i w_i r_{ik} (x_i - c_k),\\quad
        \\Sigma_k = \\frac{1}{n_k}\\sum_i w_i r_{ik}(x_i - c_k)(x_i - c_k)^T - (\\mu_k - c_k)(\\mu_k - c_k)^T
        + \\lambda I

    with :math:`c_k` the centre the statistics of component :math:`k` were taken about
    (``stats.shift[k]``, near its mean, so that the subtraction loses little) and
    :math:`\\lambda` = ``reg_covar``; with a :class:`~streamem.prior.Prior`, the posterior
    mode instead (MAP). A component whose mass vanished is re-seeded at the worst-explained
    point of the pass, with the average covariance of the others; its index is returned.

    The parameters named in ``freeze`` (of :data:`FREEZABLE`) are ``current``'s, the very
    arrays; the others maximise the likelihood given them: with the means held, the
    covariances are the scatter about them (the statistics moved onto them exactly). Nothing
    is re-seeded then.

    With ``cholesky=False`` the precisions' Cholesky factors are left out (NaN), for a
    caller that only reads the weights, means and covariances and regularises them itself
    (a variational posterior's prior does): a covariance may then be singular.
    """
    if freeze:
        return _frozen_m_step(stats, covariance_type, reg_covar, freeze, current), []
    covariance = get_covariance(covariance_type)
    empty = stats.nk <= 1e-8 * row_weight(stats)
    outliers = stats.worst.points
    reseeded = [int(k) for k in np.flatnonzero(empty)][: len(outliers)]
    nk = stats.nk + 10 * EPS * row_weight(stats)
    means_c = stats.s1 / nk[:, None]
    if prior is None:
        covariances = covariance.covariances(nk, means_c, stats.s2, reg_covar)
        weights = nk / nk.sum()
    else:
        ml_covariances = covariance.covariances(nk, means_c, stats.s2, 0.0)
        weights, means_c, covariances = prior.posterior_mode(nk, means_c, ml_covariances, stats.shift)
        covariances = covariance.add_to_diagonal(covariances, reg_covar)
    if reseeded:
        alive = ~empty
        if covariance.per_component and alive.any():
            covariances[reseeded] = np.average(covariances[alive], axis=0, weights=weights[alive])
        means_c[reseeded] = outliers[: len(reseeded)] - stats.shift[reseeded]
        weights[reseeded] = weights[alive].min() if alive.any() else 1.0
        weights = weights / weights.sum()
    means = means_c + stats.shift
    if not cholesky:
        return MixtureParams(weights, means, covariances, np.full_like(covariances, np.nan), covariance_type), reseeded
    return MixtureParams.from_covariances(weights, means, covariances, covariance_type), reseeded


def row_weight(stats) -> float:
    """The mean weight of a row of the pass: the unit of the ``10 * eps`` added to each
    component's weight (1 for rows without weights, so that a fit at any scale of the
    weights is the same)."""
    return stats.weight / stats.count if stats.count else 1.0


def _frozen_m_step(stats, covariance_type, reg_covar, freeze, current: MixtureParams) -> MixtureParams:
    covariance = get_covariance(covariance_type)
    nk = stats.nk + 10 * EPS * row_weight(stats)
    weights = current.weights if "weights" in freeze else nk / nk.sum()
    if "means" in freeze:
        stats = stats.recentred(np.broadcast_to(current.means, stats.shift.shape))
        means, means_c = current.means, np.zeros_like(stats.s1)
    else:
        means_c = stats.s1 / nk[:, None]
        means = means_c + stats.shift
    if "covariances" in freeze:
        return MixtureParams(weights, means, current.covariances, current.precisions_chol, covariance_type)
    covariances = covariance.covariances(nk, means_c, stats.s2, reg_covar)
    return MixtureParams(weights, means, covariances, covariance.precisions_chol(covariances), covariance_type)
