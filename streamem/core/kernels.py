"""Log-densities of a block of rows for every component at once: the components grouped
about shared centres (:func:`plan_groups`), the work precision chosen per group, and the
responsibilities in log space.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from streamem.core.covariance import Covariance

__all__ = [
    "Components",
    "Evaluation",
    "Group",
    "LogProbKernel",
    "NoiseKernel",
    "plan_groups",
    "reach",
    "responsibilities_inplace",
]


class Components(Protocol):
    """What a kernel reads of a mixture's parameters (a
    :class:`~streamem.core.params.MixtureParams` has it): arrays of shape (n_components,),
    (n_components, n_features) and the covariance type's shapes, and its strategy."""

    @property
    def weights(self) -> np.ndarray: ...

    @property
    def means(self) -> np.ndarray: ...

    @property
    def covariances(self) -> np.ndarray: ...

    @property
    def precisions_chol(self) -> np.ndarray: ...

    @property
    def covariance(self) -> Covariance: ...


LOG_2PI = float(np.log(2.0 * np.pi))

#: values held by the temporaries of a block of rows: a few MiB (fewer, larger numpy calls
#: between threads)
BLOCK_ELEMENTS = 1 << 20

#: rounding allowed to a component per work precision: unit roundoff times its reach
#: about the centre of its group (:func:`reach`) stays below this
ROUNDING = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
_FEATURE_COST = 8  # forming a group's features costs about a GEMM of this many components


def reach(params: Components, centre: np.ndarray) -> np.ndarray:
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


def plan_groups(params: Components, dtype, centre) -> list[tuple[np.ndarray, np.ndarray, np.dtype]]:
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
    every_row : bool
        With ``distances=True``: the values are :math:`-\tfrac12 \|L_k^T (x - \mu_k)\|^2`
        alone (no weight, no normalising constant), every group's on every row, for a
        density that is a function of the Mahalanobis distance (the t mixture's, whose
        tails leave no component negligible by the Gaussian bound).
    """

    def __init__(self, params: Components, dtype, centre=None, distances: bool = False):
        covariance = params.covariance
        self.covariance = covariance
        K, D = params.means.shape
        centre = params.weights @ params.means if centre is None else np.asarray(centre, dtype=np.float64)
        if distances:  # -d^2 / 2 alone, of every component on every row (for densities of the distances)
            constant = np.zeros(K)
        else:
            with np.errstate(divide="ignore"):
                log_weights = np.log(params.weights)
            constant = log_weights + covariance.log_det_chol(params.precisions_chol, D) - 0.5 * D * LOG_2PI
        self.every_row = distances

        def forms(at):  # weighted log-densities = forms @ features about ``at``
            form = -0.5 * covariance.mahalanobis_form(params.means - at, params.precisions_chol)
            form[:, 0] += constant  # the features' row of ones
            return form

        plan = plan_groups(params, dtype, centre)
        self.groups = [Group(components, at, work, forms(at)[components].astype(work)) for components, at, work in plan]
        self.shift = np.empty((K, D))
        for group in self.groups:
            self.shift[group.components] = group.centre
        self.shift.flags.writeable = False  # shared by the statistics of every chunk of a pass
        self.order = np.concatenate([group.components for group in self.groups])
        self.identity = len(self.groups) == 1
        ends = np.cumsum([len(group.components) for group in self.groups])
        self.slices = [slice(stop - len(group.components), stop) for group, stop in zip(self.groups, ends)]
        self.dtype = np.result_type(*(group.dtype for group in self.groups))
        self.n_components = K
        self._buffers: dict = {}
        if not self.identity and not self.every_row:
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
            coefficients = gamma * np.column_stack(
                [np.abs(form[:, 0]), np.linalg.norm(form[:, 1 : 1 + D], axis=1), 0.5 * rho]
            )
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
        if buffer is None or buffer.shape[1] != len(rows):  # contiguous, whatever blocks came before
            buffer = self._buffers[key] = np.empty((group.form.shape[1], len(rows)), dtype=group.dtype)
        features = self.covariance.centred_features(rows, group.centre, group.dtype, out=buffer)
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
        if self.every_row:
            weighted = np.empty((self.n_components, len(block)), dtype=self.dtype)
            parts: list = []
            for index, (group, rows) in enumerate(zip(self.groups, self.slices)):
                group_features = features if index == 0 else self._features(block, group)
                weighted[rows] = group.form @ group_features
                parts.append((index, None, group_features))
            return Evaluation(weighted, parts)
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
