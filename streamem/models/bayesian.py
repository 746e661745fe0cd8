r"""``BayesianGaussianMixture``: variational inference over the chunks of a dask array.

The model of scikit-learn's ``BayesianGaussianMixture`` (Bishop 2006, §10.2; Blei & Jordan
2006 for the Dirichlet process): a Dirichlet-distribution or truncated Dirichlet-process
prior on the weights, a normal-Wishart prior on each component's mean and precision, and a
factorised variational posterior of the same families. Its E-step is a Gaussian mixture's:
the responsibilities are proportional to

.. math::
    \rho_{nk} = \exp\big(E[\log\pi_k] - \tfrac{D}{2}\log\nu_k
                + \tfrac12(E[\log|\Lambda_k|]' - D/\beta_k)\big)\,
                \mathcal N\big(x_n \mid m_k, (\nu_k W_k)^{-1}\big),

so one pass of :func:`~streamem.core.stats.chunk_stats` over Gaussians of weights
:math:`\exp(c_k)` gives the statistics, and the variational update is the M-step. The
evidence lower bound (ELBO) comes from the same statistics: the entropy of the
responsibilities is :math:`\sum_n \log\sum_k \rho_{nk} - \sum_{nk} r_{nk} \log \rho_{nk}`,
and :math:`\log\rho_{nk}` is linear in the features whose responsibility-weighted sums are
the statistics. :class:`VariationalModel` is the model :func:`~streamem.engine.em.run_em` runs.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Real

import numpy as np
from scipy.special import betaln, digamma, gammaln
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from streamem.core.covariance import get_covariance
from streamem.core.packed import unpack_symmetric
from streamem.core.params import EPS, MixtureParams
from streamem.core.stats import SufficientStats, add_lists, chunk_kernels, chunk_stats
from streamem.core.validation import check_total_weight
from streamem.engine.em import FitState
from streamem.engine.passes import ChunkedData
from streamem.engine.rows import blas_per_task
from streamem.engine.starts import sklearn_init_params
from streamem.models.base import LABELS
from streamem.models.batch import BatchMixture, set_fitted
from streamem.models.online import Stepwise, warm_up_rows

__all__ = ["BayesianGaussianMixture", "VariationalModel", "VariationalParams", "VariationalPrior"]

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
#: components whose expected weight is below this are unused: counted out of
#: ``n_components_effective_`` and never a label of ``predict``
UNUSED_WEIGHT = 1e-3
#: the nearest components each used one is paired with as a merge candidate
MERGE_NEIGHBOURS = 3
#: the merge candidates a pass gathers terms for, at most
MAX_MERGE_PAIRS = 8


@dataclasses.dataclass(frozen=True, eq=False)
class VariationalParams(MixtureParams):
    """The variational posterior of a Bayesian Gaussian mixture (scikit-learn's names): the
    expected Gaussians (``weights``, ``means``, ``covariances``, ``precisions_chol``, as
    :class:`~streamem.core.params.MixtureParams`) and the distributions' own parameters.

    Attributes
    ----------
    weight_concentration : ndarray of shape (K,), or (2, K) for the Dirichlet process
        (the Beta distributions of the stick-breaking fractions).
    mean_precision : ndarray of shape (K,)
    degrees_of_freedom : ndarray of shape (K,) (equal values for ``"tied"``)
    merge_pairs : ndarray of int of shape (n_pairs, 2) or None
        The merges the pass that evaluates this posterior gathers terms for
        (:meth:`VariationalModel.merge_candidates`); None: none.
    merge_memo : ndarray of shape (n_memo, 3) or None
        Pairs evaluated before (their components, then the change of the entropy their
        merge gave), for the candidates' choice.

    ``covariances`` is the Wishart's scale inverse over its degrees of freedom, the
    expected covariance; ``weights`` the expected weights.
    """

    weight_concentration: np.ndarray
    mean_precision: np.ndarray
    degrees_of_freedom: np.ndarray
    merge_pairs: np.ndarray | None = None
    merge_memo: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        weight_concentration,
        mean_precision,
        means,
        degrees_of_freedom,
        covariances,
        precisions_chol,
        covariance_type: str,
        merge_pairs=None,
        merge_memo=None,
    ) -> VariationalParams:
        """The posterior, its expected weights computed from ``weight_concentration``."""
        if weight_concentration.ndim == 2:
            a, b = weight_concentration
            weights = a / (a + b) * np.hstack((1.0, np.cumprod(b / (a + b))[:-1]))
        else:
            weights = weight_concentration
        return cls(
            weights / weights.sum(),
            means,
            covariances,
            precisions_chol,
            covariance_type,
            weight_concentration,
            mean_precision,
            degrees_of_freedom,
            merge_pairs,
            merge_memo,
        )

    @property
    def dirichlet_process(self) -> bool:
        return self.weight_concentration.ndim == 2

    def expected_log_weights(self) -> np.ndarray:
        if self.dirichlet_process:
            a, b = self.weight_concentration
            total = digamma(a + b)
            return digamma(a) - total + np.hstack((0.0, np.cumsum(digamma(b) - total)[:-1]))
        return digamma(self.weight_concentration) - digamma(self.weight_concentration.sum())

    def log_constants(self) -> np.ndarray:
        """:math:`c_k`: what the E-step adds to the log-density of the expected Gaussian."""
        D = self.n_features
        nu = self.degrees_of_freedom
        log_lambda = D * math.log(2.0) + digamma(0.5 * (nu - np.arange(D)[:, None])).sum(axis=0)
        return self.expected_log_weights() - 0.5 * D * np.log(nu) + 0.5 * (log_lambda - D / self.mean_precision)

    def gaussian(self, unused: np.ndarray | None = None) -> MixtureParams:
        """The Gaussian mixture whose weighted log-densities are the E-step's
        :math:`\\log \\rho_{nk}` (weights :math:`\\exp(c_k)`, not normalised); ``unused``
        components get weight 0."""
        weights = np.exp(self.log_constants())
        if unused is not None:
            weights[unused] = 0.0
        return MixtureParams(weights, self.means, self.covariances, self.precisions_chol, self.covariance_type)

    def to_vector(self) -> np.ndarray:
        """The posterior's own parameters as one unconstrained vector: the logs of the
        concentrations and of the mean precisions, the means, the log of the degrees of
        freedom's excess over :math:`D - 1`, and the expected precisions' Cholesky factors
        (:meth:`Covariance.chol_to_free`)."""
        D = self.n_features
        return np.concatenate(
            [
                np.log(self.weight_concentration).ravel(),
                np.log(self.mean_precision),
                self.means.ravel(),
                np.log(self.degrees_of_freedom - (D - 1)),
                self.covariance.chol_to_free(self.precisions_chol),
            ]
        )

    def from_vector(self, vector: np.ndarray) -> VariationalParams:
        K, D = self.means.shape
        parts = np.split(vector, np.cumsum([self.weight_concentration.size, K, K * D, K]))
        concentration = np.exp(parts[0]).reshape(self.weight_concentration.shape)
        covariance = self.covariance
        chol = covariance.chol_from_free(parts[4], self.precisions_chol.shape)
        return VariationalParams.of(
            concentration,
            np.exp(parts[1]),
            parts[2].reshape(K, D),
            D - 1 + np.exp(parts[3]),
            covariance.covariances_from_precisions_chol(chol),
            chol,
            self.covariance_type,
            self.merge_pairs,
            self.merge_memo,
        )

    def to_arrays(self, prefix: str = "") -> dict:
        arrays = {
            **super().to_arrays(prefix),
            f"{prefix}weight_concentration": self.weight_concentration,
            f"{prefix}mean_precision": self.mean_precision,
            f"{prefix}degrees_of_freedom": self.degrees_of_freedom,
        }
        for name in ("merge_pairs", "merge_memo"):
            if getattr(self, name) is not None:
                arrays[f"{prefix}{name}"] = getattr(self, name)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict, covariance_type: str, prefix: str = "") -> VariationalParams:
        expected = MixtureParams.from_arrays(arrays, covariance_type, prefix)  # checks the shapes
        K = expected.n_components
        concentration = arrays[f"{prefix}weight_concentration"]
        if concentration.shape not in ((K,), (2, K)):
            raise ValueError(f"{prefix}weight_concentration has shape {concentration.shape}")
        for name in ("mean_precision", "degrees_of_freedom"):
            if arrays[prefix + name].shape != (K,):
                raise ValueError(f"{prefix}{name} has shape {arrays[prefix + name].shape}, expected ({K},)")
        pairs = arrays.get(f"{prefix}merge_pairs")
        if pairs is not None:
            pairs = np.asarray(pairs, dtype=np.intp)
            if pairs.ndim != 2 or pairs.shape[1] != 2 or not ((pairs >= 0) & (pairs < K)).all():
                raise ValueError(f"{prefix}merge_pairs must be pairs of components, got shape {pairs.shape}")
        memo = arrays.get(f"{prefix}merge_memo")
        if memo is not None and (memo.ndim != 2 or memo.shape[1] != 3):
            raise ValueError(f"{prefix}merge_memo must have 3 columns, got shape {memo.shape}")
        return cls.of(
            concentration,
            arrays[f"{prefix}mean_precision"],
            expected.means,
            arrays[f"{prefix}degrees_of_freedom"],
            expected.covariances,
            expected.precisions_chol,
            covariance_type,
            pairs,
            memo,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class VariationalPrior:
    """The prior's hyper-parameters, defaults resolved (scikit-learn's ``*_prior_``)."""

    weight_concentration_prior_type: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class VariationalModel:
    """The Bayesian Gaussian mixture for :func:`~streamem.engine.em.run_em`: the E-step of the
    expected Gaussians (:meth:`VariationalParams.gaussian`) about ``centre``, the
    variational update, and the ELBO as the objective (a total, as scikit-learn's).
    With ``merges``, the update also merges pairs of components when that raises the ELBO
    (:meth:`merge`)."""

    covariance_type: str
    reg_covar: float
    centre: np.ndarray
    prior: VariationalPrior
    missing: bool = False
    merges: bool = False

    def estep(self, data: ChunkedData, params_list: list[VariationalParams]) -> list:
        gaussians = [params.gaussian() for params in params_list]
        pairs = [params.merge_pairs if self.merges else None for params in params_list]
        totals = data.map_reduce(
            chunk_stats,
            gaussians,
            self.centre,
            self.missing,
            pairs,
            combine=add_lists,
            prepare=chunk_kernels,
            stack=True,
        )
        for total in totals:
            check_total_weight(total.weight)
        return totals

    def objective(self, stats, params: VariationalParams) -> dict:
        return {"log_likelihood": stats.mean_loglik, "objective": self.elbo(stats, params, self.update(stats))}

    def mstep(self, stats, params: VariationalParams) -> tuple[VariationalParams, dict]:
        """The variational update; with ``merges``, the merges that raise the ELBO (the
        move ``{"merged": pairs}``, each pair's second component emptied into its first),
        then under the Dirichlet process the components in order of their weights when
        that raises it (``{"reordered": order}``: the largest first, the emptied last), and
        the candidates the next pass gathers terms for."""
        new = self.update(stats)
        if not self.merges:
            return new, {}
        moves = {}
        memo = {} if params.merge_memo is None else {(int(j), int(k)): loss for j, k, loss in params.merge_memo}
        if stats.merge_terms is not None and params.merge_pairs is not None and len(params.merge_pairs):
            merged, losses = self.merge(stats, params, new)
            memo.update(losses)
            if merged:
                stats = merged_stats(stats, merged)
                new, moves["merged"] = self.update(stats), [[int(j), int(k)] for j, k in merged]
        if moves and new.dirichlet_process:  # the stick-breaking order the fewer components fit best
            order = np.argsort(-stats.nk, kind="stable")
            if (order != np.arange(len(order))).any():
                permuted = permuted_stats(stats, order)
                reordered = self.update(permuted)
                # the entropy does not depend on the order: compare the other terms
                if self.bound(0.0, reordered) > self.bound(0.0, new):
                    stats, new, moves["reordered"] = permuted, reordered, order.tolist()
        if moves:  # the components' indices changed
            memo = {}
        pairs = self.merge_candidates(stats, new, memo)
        memo = np.array([(j, k, loss) for (j, k), loss in sorted(memo.items())], dtype=np.float64).reshape(-1, 3)
        return dataclasses.replace(new, merge_pairs=pairs, merge_memo=memo), moves

    def merge(self, stats, old: VariationalParams, new: VariationalParams) -> tuple[list, dict]:
        r"""The pairs of ``old.merge_pairs`` to merge (Hughes & Sudderth 2013): each gives the
        rows of its second component to its first. The responsibilities of a merged pair
        are the sum of the two's, so its statistics are their sums, and its entropy loses
        :math:`\sum_i w_i (s_i \log s_i - r_{ij} \log r_{ij} - r_{ik} \log r_{ik})`,
        :math:`s_i = r_{ij} + r_{ik}`, from the terms the pass gathered
        (:attr:`~streamem.core.stats.SufficientStats.merge_terms`): the ELBO of a set of merges
        is exact. Pairs go by their gain alone, best first, each taken when the ELBO of
        the set with it is higher than without; none shares a component with another.
        The next E-step can only raise the ELBO further, so it never decreases. Returns
        the merges and each pair's change of the entropy (by its components in order)."""
        K, pairs, terms = old.n_components, old.merge_pairs, stats.merge_terms
        if len(terms) != K + len(pairs):
            return [], {}
        entropy = self.entropy(stats, old)
        losses = terms[pairs[:, 0]] + terms[pairs[:, 1]] - terms[K:]  # each merge's change of the entropy, <= 0
        oriented = [(j, k) if stats.nk[j] >= stats.nk[k] else (k, j) for j, k in pairs.tolist()]

        def bound(chosen):  # minus infinity for a set leaving a singular posterior (see _merge_bound)
            loss = sum(losses[p] for p in chosen)
            try:
                return self.bound(entropy + loss, self.update(merged_stats(stats, [oriented[p] for p in chosen])))
            except ValueError:
                return -np.inf

        best = self.bound(entropy, new)
        gains = np.array([bound([p]) - best for p in range(len(pairs))])
        chosen, taken = [], set()
        for p in np.argsort(-gains, kind="stable"):
            if gains[p] <= 0:
                break
            if taken.isdisjoint(oriented[p]):
                value = bound([*chosen, p])
                if value > best:
                    best, chosen = value, [*chosen, p]
                    taken.update(oriented[p])
        return [oriented[p] for p in chosen], {
            (min(j, k), max(j, k)): float(loss) for (j, k), loss in zip(pairs.tolist(), losses)
        }

    def merge_candidates(self, stats, new: VariationalParams, memo: dict) -> np.ndarray:
        """The merges worth gathering terms for in the next pass: pairs of used components
        (expected weight at least :data:`UNUSED_WEIGHT`), each component with its
        :data:`MERGE_NEIGHBOURS` nearest (by the distance of their means in the sum of
        their expected precisions), whose merge would raise the ELBO's other terms than
        the entropy by more than the entropy lost when last evaluated (``memo``: pairs to
        that loss; a merge can only lower the entropy, so a merge without this gain cannot
        raise the ELBO, and one rejected is tried again only when its gain outgrows its
        loss), the :data:`MAX_MERGE_PAIRS` best."""
        used = np.flatnonzero(new.weights >= UNUSED_WEIGHT)
        if len(used) < 2:
            return np.empty((0, 2), dtype=np.intp)
        K, D = new.means.shape
        precisions = new.covariance.full_precisions(new.precisions_chol, K, D)[used]
        delta = new.means[used][:, None] - new.means[used][None]
        distance = np.einsum("jkd,jde,jke->jk", delta, precisions, delta)
        distance = distance + distance.T
        np.fill_diagonal(distance, np.inf)
        nearest = np.argsort(distance, axis=1, kind="stable")[:, :MERGE_NEIGHBOURS]
        pairs = sorted({(min(j, k), max(j, k)) for j, row in zip(used, used[nearest]) for k in row if j != k})
        best = self.bound(0.0, new)
        gains = [self._merge_bound(stats, pair) - best + memo.get(pair, 0.0) for pair in pairs]
        ranked = [pair for gain, pair in sorted(zip(gains, pairs), key=lambda item: -item[0]) if gain > 0]
        return np.array(ranked[:MAX_MERGE_PAIRS], dtype=np.intp).reshape(-1, 2)

    def _merge_bound(self, stats, pair) -> float:
        """The bound's terms but the entropy after merging ``pair``; minus infinity when the
        emptied component's posterior is the prior's alone and that is singular (data with
        fewer rows than features, or a constant feature)."""
        try:
            return self.bound(0.0, self.update(merged_stats(stats, [pair])))
        except ValueError:
            return -np.inf

    def to_vector(self, params: VariationalParams) -> np.ndarray:
        return params.to_vector()

    def from_vector(self, vector: np.ndarray, like: VariationalParams) -> VariationalParams:
        return like.from_vector(vector)

    def update(self, stats) -> VariationalParams:
        """The variational posterior from the statistics of an E-step."""
        nk = stats.nk + 10 * EPS
        means_c = stats.s1 / nk[:, None]
        ml = get_covariance(self.covariance_type).covariances(nk, means_c, stats.s2, self.reg_covar)
        return self.posterior(nk, means_c, ml, stats.shift)

    def posterior(self, nk, means_c, ml_covariances, shift) -> VariationalParams:
        """From weighted counts ``nk``, means (minus ``shift``) and covariances (with
        ``reg_covar``), as scikit-learn's ``_estimate_weights``, ``_estimate_means`` and
        ``_estimate_precisions``."""
        prior, covariance = self.prior, get_covariance(self.covariance_type)
        if prior.weight_concentration_prior_type == "dirichlet_process":
            tail = np.hstack((np.cumsum(nk[::-1])[-2::-1], 0.0))
            concentration = np.stack([1.0 + nk, prior.weight_concentration + tail])
        else:
            concentration = prior.weight_concentration + nk
        beta = prior.mean_precision + nk
        deviations = means_c - (prior.mean - shift)
        posterior_c = (prior.mean_precision * (prior.mean - shift) + nk[:, None] * means_c) / beta[:, None]
        coefficient = nk * prior.mean_precision / beta
        covariances, nu = covariance.variational_covariances(
            nk, ml_covariances, coefficient, deviations, prior.covariance, prior.degrees_of_freedom
        )
        return VariationalParams.of(
            concentration,
            beta,
            posterior_c + shift,
            nu,
            covariances,
            covariance.precisions_chol(covariances),
            self.covariance_type,
        )

    def initial(self, params: MixtureParams, total_weight: float) -> VariationalParams:
        """The posterior after scikit-learn's first update: from the statistics that initial
        Gaussian parameters were estimated from (weights ``n_k / n``, means, covariances)."""
        nk = params.weights * (total_weight + 10 * EPS * params.n_components)
        return self.posterior(nk, params.means - self.centre, params.covariances, self.centre)

    def elbo(self, stats, old: VariationalParams, new: VariationalParams) -> float:
        """scikit-learn's lower bound: the responsibilities of the E-step under ``old``, the
        posterior ``new`` they give (its constant terms left out)."""
        return self.bound(self.entropy(stats, old), new)

    @staticmethod
    def entropy(stats, old: VariationalParams) -> float:
        """The responsibilities' entropy plus the holes' (with missing values) of an E-step
        under ``old``: its total log-normaliser minus the expected log-joint under the
        E-step's constants."""
        return stats.loglik - stats.expected_log_joint(old, old.log_constants())

    @staticmethod
    def bound(entropy: float, new: VariationalParams) -> float:
        """scikit-learn's lower bound from the responsibilities' ``entropy`` and the
        posterior ``new`` they give."""
        D = new.n_features
        nu = new.degrees_of_freedom
        log_det = new.covariance.log_det_chol(new.precisions_chol, D) - 0.5 * D * np.log(nu)
        log_wishart = -(
            nu * log_det + nu * D * 0.5 * math.log(2.0) + gammaln(0.5 * (nu - np.arange(D)[:, None])).sum(axis=0)
        ).sum()
        if new.dirichlet_process:
            log_norm_weight = -betaln(*new.weight_concentration).sum()
        else:
            log_norm_weight = gammaln(new.weight_concentration.sum()) - gammaln(new.weight_concentration).sum()
        return float(entropy - log_wishart - log_norm_weight - 0.5 * D * np.log(new.mean_precision).sum())

    def kl_divergence(self, params: VariationalParams) -> float:
        r"""The Kullback-Leibler divergence of the posterior's global factors from the
        prior's: the weights' (Dirichlet, or the Dirichlet process's Beta sticks) and each
        component's normal-Wishart,

        .. math::
            \mathrm{KL} = \tfrac12\big(D\beta_0/\beta_k - D + D\log(\beta_k/\beta_0)
                + \beta_0 \nu_k (m_k - m_0)^T W_k (m_k - m_0)\big)
                + \mathrm{KL}\big(\mathcal W(W_k, \nu_k) \,\|\, \mathcal W(\Psi_0^{-1}, \nu_0)\big),

        the Wishart of the diag and spherical types restricted to their matrices, and the
        tied one counted once per component (as scikit-learn's bound counts it). The ELBO of
        data is the sum of their ``log sum_k rho_nk`` (the responsibilities at their
        optimum) minus this."""
        prior, covariance = self.prior, params.covariance
        K, D = params.means.shape
        alpha0 = prior.weight_concentration
        if params.dirichlet_process:
            a, b = params.weight_concentration
            kl_weights = (
                -math.log(alpha0)
                - betaln(a, b)
                + (a - 1) * digamma(a)
                + (b - alpha0) * digamma(b)
                + (1 + alpha0 - a - b) * digamma(a + b)
            ).sum()
        else:
            alpha = params.weight_concentration
            kl_weights = (
                gammaln(alpha.sum())
                - gammaln(alpha).sum()
                - gammaln(K * alpha0)
                + K * gammaln(alpha0)
                + ((alpha - alpha0) * (digamma(alpha) - digamma(alpha.sum()))).sum()
            )
        beta0, beta = prior.mean_precision, params.mean_precision
        nu0, nu = prior.degrees_of_freedom, params.degrees_of_freedom
        precisions = covariance.full_precisions(params.precisions_chol, K, D)  # E[Lambda_k] = nu_k W_k
        diff = params.means - prior.mean
        kl_means = 0.5 * (
            D * (beta0 / beta - 1.0 + np.log(beta / beta0)) + beta0 * np.einsum("kd,kde,ke->k", diff, precisions, diff)
        )
        psi = prior.covariance if prior.covariance.ndim == 2 else np.diag(np.broadcast_to(prior.covariance, (D,)))
        log_det_w = 2.0 * covariance.log_det_chol(params.precisions_chol, D) - D * np.log(nu)
        half = 0.5 * (np.subtract.outer(nu, np.arange(D)))  # (nu_k - j) / 2, shape (K, D)
        half0 = 0.5 * (nu0 - np.arange(D))
        kl_wishart = (
            0.5 * nu0 * (-np.linalg.slogdet(psi)[1] - log_det_w)
            + 0.5 * nu * (np.einsum("de,ked->k", psi, precisions) / nu - D)
            + gammaln(half0).sum()
            - gammaln(half).sum(axis=1)
            + 0.5 * (nu - nu0) * digamma(half).sum(axis=1)
        )
        return float(kl_weights + kl_means.sum() + kl_wishart.sum())


def merged_stats(stats, pairs) -> SufficientStats:
    """The statistics with each pair's second component's rows given to its first (the
    second's left empty): its moments moved onto the first's centre, then added."""
    shift = stats.shift.copy()
    for j, k in pairs:
        shift[k] = shift[j]
    moved = stats.recentred(shift)
    nk, s1, s2 = moved.nk.copy(), moved.s1.copy(), moved.s2.copy()
    per_component = get_covariance(stats.covariance_type).per_component  # "tied" pools the components' moments
    for j, k in pairs:
        nk[j], s1[j] = nk[j] + nk[k], s1[j] + s1[k]
        nk[k], s1[k] = 0.0, 0.0
        if per_component:
            s2[j], s2[k] = s2[j] + s2[k], 0.0
    return dataclasses.replace(moved, nk=nk, s1=s1, s2=s2, merge_terms=None)


def permuted_stats(stats, order) -> SufficientStats:
    """The statistics of the components in ``order`` (component ``i`` of the result is
    ``order[i]``)."""
    per_component = get_covariance(stats.covariance_type).per_component
    return dataclasses.replace(
        stats,
        nk=stats.nk[order],
        s1=stats.s1[order],
        shift=stats.shift[order],
        s2=stats.s2[order] if per_component else stats.s2,
        merge_terms=None,
    )


def _data_moments(chunked: ChunkedData, centre: np.ndarray, full: bool):
    """The data's (``chunked``'s rows') weighted mean, its scatter about it (the matrix with ``full``, else its
    diagonal: the pass then forms 2D features per row, not D^2 / 2) and its total weight."""
    D = chunked.n_features
    unit = np.eye(D)[None] if full else np.ones((1, D))
    one = MixtureParams.from_covariances(np.ones(1), centre[None], unit, "full" if full else "diag")
    (total,) = chunked.map_reduce(chunk_stats, [one], centre, False, combine=add_lists, stack=True)
    check_total_weight(total.weight)
    mean_c = total.s1[0] / total.weight
    if full:
        scatter = unpack_symmetric(total.s2[0], D) - total.weight * np.outer(mean_c, mean_c)
    else:
        scatter = total.s2[0] - total.weight * mean_c * mean_c
    return centre + mean_c, scatter, total.weight


def _posterior_of(model) -> VariationalParams:
    """The posterior held by a fitted model's attributes (scikit-learn's names: this
    estimator's, or scikit-learn's ``BayesianGaussianMixture``'s)."""
    as_float = lambda value: np.asarray(value, dtype=np.float64)  # noqa: E731
    nu = np.broadcast_to(as_float(model.degrees_of_freedom_), (model.n_components,)).copy()  # a float for tied
    return VariationalParams.of(
        as_float(model.weight_concentration_),
        as_float(model.mean_precision_),
        as_float(model.means_),
        nu,
        as_float(model.covariances_),
        as_float(model.precisions_cholesky_),
        model.covariance_type,
    )


class BayesianGaussianMixture(Stepwise, BatchMixture):
    r"""Variational Bayesian Gaussian mixture, fitted over the chunks of a dask array.

    The model, parameters and fitted attributes of scikit-learn's
    :class:`~sklearn.mixture.BayesianGaussianMixture`, on :class:`~streamem.GaussianMixture`'s
    engine: one pass over the data per iteration, statistics reduced by a tree, every
    candidate (``n_init``) in the same passes, sample weights, checkpoints, a cluster.
    Given the same initial parameters and number of iterations, the fit equals
    scikit-learn's. With the Dirichlet-process prior (the default) and a small
    ``weight_concentration_prior``, unneeded components are left with vanishing weights:
    ``n_components_effective_`` counts the others, and ``predict`` never returns an unused
    component (expected weight below ``1e-3``).

    Parameters
    ----------
    n_components : int, default=1
        The number of components at most.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound (a total over the data, as
        in scikit-learn).
    reg_covar : float, default=1e-6
    max_iter : int, default=100
    n_init : int, default=1
    n_starts : int, default=1
    init_iter : int or None, default=10
        As :class:`~streamem.GaussianMixture`'s: with ``n_starts > 1``, each initialisation's
        starts run ``init_iter`` iterations, then the best (the highest lower bound) goes on
        alone.
    init_params : str, default="k-means||"
        One of "k-means||", "trimmed-k-means||", "k-means++", "random", "random_from_data",
        "kmeans" and "auto".
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, default="dirichlet_process"
    weight_concentration_prior : float > 0, default=None
        ``1 / n_components`` when None.
    mean_precision_prior : float > 0, default=None
        1 when None.
    mean_prior : array-like of shape (n_features,), default=None
        The data's mean when None.
    degrees_of_freedom_prior : float > n_features - 1, default=None
        ``n_features`` when None.
    covariance_prior : float or array-like, default=None
        The Wishart's scale inverse, in the covariance type's shape; the data's covariance
        (full, tied) or variances (diag, their mean for spherical) when None.
    weights_init, means_init, precisions_init : array-like, default=None
        Initial Gaussian parameters, taken as the statistics of the first update: from
        initial responsibilities ``R``, ``R.sum(0) / n``, the weighted means, and the
        inverses of the weighted covariances plus ``reg_covar`` (what scikit-learn's
        ``_initialize`` computes from them).
    random_state, warm_start, verbose, verbose_interval : as in :class:`~streamem.GaussianMixture`
    checkpoint, scheduler_address, persist, persist_fraction, timeout
        As in :class:`~streamem.GaussianMixture`.
    step_exponent, step_offset, forgetting, warm_up
        ``partial_fit``'s step sizes and warm-up rows, as in
        :class:`~streamem.OnlineGaussianMixture`.
    missing : {"error", "marginalize"}, default="error"
        As in :class:`~streamem.GaussianMixture`: with ``"marginalize"`` each row's holes
        are latent, their variational factor the conditional of the expected Gaussian given
        the row's observed values (exact mean-field updates, and an ELBO that still never
        decreases). The prior's defaults and the initialisation use the complete rows.
    moves : {"auto", "merge"} or None, default="auto"
        ``"merge"``: ``fit`` merges pairs of components whenever that raises the ELBO
        (Hughes & Sudderth 2013; :meth:`VariationalModel.merge`), so that surplus
        components are pruned in tens of passes rather than drained over thousands; each
        pass gathers the terms of a few candidate pairs (each component's nearest ones whose
        merge could raise the ELBO), the ``history_`` record of a pass that merged has
        ``merged`` (the pairs, the second of each emptied into the first). A merge needs
        the responsibilities of complete rows: ``"auto"`` is ``"merge"`` unless
        ``missing="marginalize"``, and None. None: the coordinate-ascent updates alone
        (with ``accelerate=None``, scikit-learn's iterations). ``partial_fit`` never merges:
        components the first rows do not need stay for later ones.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : ndarray
    weight_concentration_ : ndarray, or tuple of two for the Dirichlet process
    mean_precision_ : ndarray of shape (n_components,)
    degrees_of_freedom_ : ndarray of shape (n_components,), a float for ``"tied"``
    weight_concentration_prior_, mean_precision_prior_, mean_prior_, degrees_of_freedom_prior_, covariance_prior_
        The prior with its defaults resolved.
    n_components_effective_ : int
    converged_, n_iter_, n_features_in_
    lower_bound_ : float
        The ELBO (without its constant terms, a total over the data, as scikit-learn's)
        after the last iteration; ``lower_bounds_`` and ``history_`` (key ``objective``)
        hold it per iteration. After ``partial_fit``, a running estimate of the same bound
        for the :math:`N_t` rows the posterior counts (see Notes). :meth:`elbo` gives the
        bound of given data per sample, with its constants.
    means_history_ : ndarray of shape (n_iter + 1, n_components, n_features)
    n_batches_, n_samples_seen_ : int
        After ``partial_fit``: the batches and rows the posterior has been updated with.

    Notes
    -----
    ``partial_fit`` is stochastic variational inference (Hoffman, Blei, Wang & Paisley
    2013): the first rows (``warm_up``) get a batch fit, which also sets the prior's
    defaults; then each batch's statistics, per unit of weight and computed under the
    current posterior, are mixed into running ones with the step :math:`\eta_t` of
    :class:`~streamem.OnlineGaussianMixture`, and the posterior is the prior updated with
    them as the statistics of :math:`N_t` rows,

    .. math::
        s_t = (1 - \eta_t)\, s_{t-1} + \eta_t\, \hat s(\text{batch}_t), \qquad
        N_t = (1 - \eta_{\min}) N_{t-1} + w(\text{batch}_t), \qquad
        \lambda_t = \lambda_0 + N_t\, s_t:

    a natural-gradient step on the global variational parameters, as the posterior's
    natural parameters are linear in the statistics. :math:`N_t` is the weight seen, or
    with ``forgetting`` (:math:`\eta_{\min}`) about the last ``1 / forgetting`` batches'.
    A model fitted by ``fit`` starts a new stream at its first ``partial_fit``.

    Examples
    --------
    >>> import numpy as np, streamem
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (500, 2)), rng.normal(5, 1, (500, 2))])
    >>> bgm = streamem.BayesianGaussianMixture(5, weight_concentration_prior=1e-3, random_state=0).fit(X)
    >>> bgm.n_components_effective_
    2
    """

    model_name = "bayesian"
    model_class = VariationalModel
    variational = True

    # the start's covariances enter the posterior beside the prior's scale, which regularises
    # them: a component of fewer rows than features has one (scikit-learn's, reg_covar=0 too)
    _gaussian_start = False

    _parameter_constraints: dict = {
        **BatchMixture._batch_constraints,
        "weight_concentration_prior_type": [StrOptions(set(PRIOR_TYPES))],
        "weight_concentration_prior": [Interval(Real, 0.0, None, closed="neither"), None],
        "mean_precision_prior": [Interval(Real, 0.0, None, closed="neither"), None],
        "degrees_of_freedom_prior": [Interval(Real, 0.0, None, closed="neither"), None],
        "mean_prior": ["array-like", None],
        "covariance_prior": ["array-like", Interval(Real, 0.0, None, closed="neither"), None],
        "moves": [StrOptions({"auto", "merge"}), None],
        **Stepwise._step_constraints,
    }
    _params_class = VariationalParams
    _avoids_collapse = False  # components that empty out are the variational fit's pruning
    _offers_split_merge = False  # its moves are merges whose bound is exact (``moves``)

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        n_starts=1,
        init_iter=10,
        init_params="k-means||",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        step_exponent=0.6,
        step_offset=1.0,
        forgetting=None,
        warm_up=None,
        missing="error",
        checkpoint=None,
        scheduler_address=None,
        persist=False,
        persist_fraction=0.5,
        timeout=None,
        accelerate="squarem",
        stopping="auto",
        moves="auto",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.n_starts = n_starts
        self.init_iter = init_iter
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.step_exponent = step_exponent
        self.step_offset = step_offset
        self.forgetting = forgetting
        self.warm_up = warm_up
        self.missing = missing
        self.checkpoint = checkpoint
        self.scheduler_address = scheduler_address
        self.persist = persist
        self.persist_fraction = persist_fraction
        self.timeout = timeout
        self.accelerate = accelerate
        self.stopping = stopping
        self.moves = moves

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, sample_weight=None, storage_options=None, feature_dim=None):
        """Fit the variational posterior, one pass over the chunks of X per iteration (X,
        ``storage_options`` and ``feature_dim`` as :meth:`GaussianMixture.fit` takes them)."""
        self._end_stream()
        job = self._fit(X, None, sample_weight, storage_options, feature_dim)  # y is ignored, as by scikit-learn's
        self._set_prior(job.model.prior)
        return self

    def _weights_relative(self) -> bool:
        return False  # the prior weighs against the rows, each counted by its weight

    def _model(self, job, shift: np.ndarray) -> VariationalModel:
        """The variational model of the job's data (built once a job: the prior's defaults
        take a pass); without merges for an online estimator's warm-up, so that components
        the first rows do not need stay for the stream's later rows."""
        if job.model is not None:
            return job.model
        chunked = job.chunked
        full = self.covariance_type in ("full", "tied") and self.covariance_prior is None
        missing = self.missing == "marginalize"
        if missing and self.moves == "merge":
            raise ValueError("moves='merge' needs complete rows: with missing='marginalize' pass moves=None or 'auto'")
        mean, scatter, total = _data_moments(chunked.complete_rows() if missing else chunked, shift, full)
        merges = self.moves is not None and not missing and not job.warm_up
        model = self.model_class(
            self.covariance_type,
            self.reg_covar,
            shift,
            self._resolve_prior(mean, scatter, total),
            missing,
            merges=merges,
        )
        job.model, job.data_weight = model, total
        return model

    def _resolve_prior(self, mean, scatter, total) -> VariationalPrior:
        """The prior's hyper-parameters, checked, with scikit-learn's defaults from the data."""
        K, D = self.n_components, len(mean)
        covariance = get_covariance(self.covariance_type)
        prior_mean = mean if self.mean_prior is None else np.asarray(self.mean_prior, dtype=np.float64)
        if prior_mean.shape != (D,):
            raise ValueError(f"expected mean_prior of shape ({D},), got {prior_mean.shape}")
        nu = float(D if self.degrees_of_freedom_prior is None else self.degrees_of_freedom_prior)
        if nu <= D - 1:
            raise ValueError(f"expected degrees_of_freedom_prior > n_features - 1 = {D - 1}, got {nu}")
        if self.covariance_prior is None:
            psi = scatter / max(total - 1.0, EPS)  # as numpy.cov and numpy.var, with ddof=1
            if self.covariance_type == "spherical":
                psi = np.array(psi.mean())
        else:
            psi = np.asarray(self.covariance_prior, dtype=np.float64)
            covariance.check_prior(psi, D)
        alpha = 1.0 / K if self.weight_concentration_prior is None else float(self.weight_concentration_prior)
        beta = 1.0 if self.mean_precision_prior is None else float(self.mean_precision_prior)
        return VariationalPrior(self.weight_concentration_prior_type, alpha, beta, prior_mean, nu, psi)

    def _initial_runs(self, job):
        runs, shift = super()._initial_runs(job)
        starts = [run for run in runs if not isinstance(run.params, VariationalParams)]  # a warm start is a posterior
        if starts:
            model = self._model(job, shift)
            for run in starts:
                run.params = model.initial(run.params, job.data_weight)
        return runs, shift

    # ------------------------------------------------------------ partial_fit

    def _initialise(self, batches) -> None:
        """The posterior of a batch fit of the warm-up rows (``n_init`` candidates; the
        prior's defaults from those rows), and its statistics on them as the running ones."""
        data, weights = warm_up_rows(batches)
        posterior, shift, model = self._fit_rows(data, weights)
        (stats,) = chunk_stats(data, weights, [posterior.gaussian()], shift, model.missing)
        self._variational, self._shift, self._seen = model, shift, 0.0
        self._stats, self._iterate = stats.normalized(), posterior
        self._entropy = model.entropy(stats, posterior) / stats.weight
        self._set_prior(model.prior)
        self._set_params(posterior)
        self.lower_bounds_ = []

    def _step(self, X, sample_weight) -> None:
        """One step of stochastic variational inference; nothing changes unless it succeeds."""
        model = self._variational
        (batch,) = chunk_stats(X, sample_weight, [self._iterate.gaussian()], self._shift, model.missing)
        check_total_weight(batch.weight)
        t, eta = self._next_step(batch)
        stats = self._stats.step(batch, eta)
        entropy = (1.0 - eta) * self._entropy + eta * model.entropy(batch, self._iterate) / batch.weight
        seen = (1.0 - (self.forgetting or 0.0)) * self._seen + batch.weight
        posterior = model.update(stats * seen)
        lower_bound = model.bound(entropy * seen, posterior)
        self._stats, self._iterate, self._seen, self._entropy = stats, posterior, seen, entropy
        self.n_batches_ = t
        self.n_samples_seen_ += int(batch.count)
        self._set_params(posterior)
        self.lower_bound_ = lower_bound

    def elbo(self, X, sample_weight=None) -> float:
        """The evidence lower bound of X under the fitted posterior, per unit of sample
        weight, with every constant term: the sum of ``score_samples`` (each row's
        responsibilities at their optimum) minus the posterior's divergence from the prior
        (:meth:`VariationalModel.kl_divergence`), over the total weight. Fits of any kind
        (batch, ``partial_fit``, other settings) compare by it on the same data; one pass."""
        check_is_fitted(self, "precisions_cholesky_")
        data, _ = self._validate_X(X, reset=False)
        weights = self._validate_sample_weight(sample_weight, data)
        posterior = self._state_params()
        prior = VariationalPrior(
            self.weight_concentration_prior_type,
            self.weight_concentration_prior_,
            self.mean_precision_prior_,
            np.asarray(self.mean_prior_, dtype=np.float64),
            self.degrees_of_freedom_prior_,
            np.asarray(self.covariance_prior_, dtype=np.float64),
        )
        model = self.model_class(
            self.covariance_type,
            self.reg_covar,
            posterior.weights @ posterior.means,
            prior,
            self.missing == "marginalize",
        )
        chunked = ChunkedData(data, weights)
        with blas_per_task(chunked.n_chunks, chunked.X.size):
            (stats,) = model.estep(chunked, [posterior])
        return float((stats.loglik - model.kl_divergence(posterior)) / stats.weight)

    # ------------------------------------------------------------- attributes

    def _set_params(self, params: VariationalParams) -> None:
        super()._set_params(params)  # the expected weights, means, covariances and precisions
        concentration = params.weight_concentration
        self.weight_concentration_ = (concentration[0], concentration[1]) if params.dirichlet_process else concentration
        self.mean_precision_ = params.mean_precision
        nu = params.degrees_of_freedom
        self.degrees_of_freedom_ = float(nu[0]) if self.covariance_type == "tied" else nu
        self.n_components_effective_ = int((self.weights_ >= UNUSED_WEIGHT).sum())

    def _set_prior(self, prior: VariationalPrior) -> None:
        self.weight_concentration_prior_ = prior.weight_concentration
        self.mean_precision_prior_ = prior.mean_precision
        self.mean_prior_ = prior.mean
        self.degrees_of_freedom_prior_ = prior.degrees_of_freedom
        self.covariance_prior_ = prior.covariance

    def _state_params(self) -> VariationalParams:
        """The posterior, from the fitted attributes."""
        check_is_fitted(self, "precisions_cholesky_")
        return _posterior_of(self)

    def fitted_params(self) -> MixtureParams:
        """The expected Gaussians whose weighted log-densities are the E-step's (their
        weights :math:`\\exp(c_k)` are not normalised): responsibilities and
        ``score_samples`` as scikit-learn's."""
        return self._state_params().gaussian()

    def bic(self, X):
        """Not defined for a variational fit (its ``lower_bound_`` compares fits); raises."""
        raise AttributeError("BIC is not defined for BayesianGaussianMixture; compare lower_bound_ instead")

    def aic(self, X):
        """Not defined for a variational fit (its ``lower_bound_`` compares fits); raises."""
        raise AttributeError("AIC is not defined for BayesianGaussianMixture; compare lower_bound_ instead")

    def information_criteria(self, log_likelihood, n_samples):
        """Not defined for a variational fit (its ``lower_bound_`` compares fits); raises."""
        raise AttributeError("BIC and AIC are not defined for BayesianGaussianMixture; compare lower_bound_ instead")

    def predict(self, X):
        """Component labels, never an unused component's; lazy for dask or zarr input."""
        return self._apply(X, LABELS, self._state_params().gaussian(self.weights_ < UNUSED_WEIGHT))

    # ---------------------------------------------------------- persistence

    def state(self) -> tuple[dict, dict]:
        arrays, attrs = super().state()
        arrays["prior_mean"] = np.asarray(self.mean_prior_)
        arrays["prior_covariance"] = np.asarray(self.covariance_prior_)
        attrs["prior"] = {
            "weight_concentration": float(self.weight_concentration_prior_),
            "mean_precision": float(self.mean_precision_prior_),
            "degrees_of_freedom": float(self.degrees_of_freedom_prior_),
        }
        if getattr(self, "_stats", None) is not None:  # fitted by partial_fit: continue exactly after loading
            self._running_state(arrays, attrs["fitted"])
            attrs["fitted"].update(seen_weight=float(self._seen), running_entropy=float(self._entropy))
        elif getattr(self, "_buffer", None):
            raise ValueError("the model is still warming up: no parameters to save yet")
        return arrays, attrs

    def _restore(self, state: FitState, arrays: dict, attrs: dict) -> None:
        super()._restore(state, arrays, attrs)
        if "prior" not in attrs:  # a checkpoint's state
            return
        hyper = attrs["prior"]
        prior = VariationalPrior(
            self.weight_concentration_prior_type,
            hyper["weight_concentration"],
            hyper["mean_precision"],
            arrays["prior_mean"],
            hyper["degrees_of_freedom"],
            arrays["prior_covariance"],
        )
        self._set_prior(prior)
        fitted = attrs["fitted"]
        if "n_batches" in fitted:
            self._restore_running(arrays, fitted, VariationalParams)
            self._variational = self.model_class(
                self.covariance_type, self.reg_covar, self._shift, prior, self.missing == "marginalize"
            )
            self._seen = float(fitted["seen_weight"])
            self._entropy = float(fitted["running_entropy"])
            self._buffer = []

    # --------------------------------------------------------------- sklearn

    def to_sklearn(self):
        """An equivalent fitted :class:`sklearn.mixture.BayesianGaussianMixture`."""
        from sklearn.mixture import BayesianGaussianMixture as SkBayesianGaussianMixture

        init = sklearn_init_params(self.init_params)
        model = SkBayesianGaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            init_params=init,
            weight_concentration_prior_type=self.weight_concentration_prior_type,
            weight_concentration_prior=self.weight_concentration_prior,
            mean_precision_prior=self.mean_precision_prior,
            mean_prior=self.mean_prior,
            degrees_of_freedom_prior=self.degrees_of_freedom_prior,
            covariance_prior=self.covariance_prior,
            random_state=self.random_state,
            warm_start=self.warm_start,
        )
        for name in (
            "weights_",
            "means_",
            "covariances_",
            "precisions_cholesky_",
            "precisions_",
            "mean_precision_",
            "weight_concentration_prior_",
            "mean_precision_prior_",
            "mean_prior_",
            "degrees_of_freedom_prior_",
            "covariance_prior_",
        ):
            setattr(model, name, np.copy(getattr(self, name)))
        model.weight_concentration_ = (
            tuple(np.copy(c) for c in self.weight_concentration_)
            if isinstance(self.weight_concentration_, tuple)
            else np.copy(self.weight_concentration_)
        )
        model.degrees_of_freedom_ = np.copy(self.degrees_of_freedom_)
        model.converged_, model.n_iter_, model.lower_bound_ = self.converged_, self.n_iter_, self.lower_bound_
        model.lower_bounds_ = list(self.lower_bounds_)
        model.n_features_in_ = self.n_features_in_
        return model

    @classmethod
    def from_sklearn(cls, model) -> BayesianGaussianMixture:
        """A streamem model equivalent to a fitted :class:`sklearn.mixture.BayesianGaussianMixture`."""
        check_is_fitted(model, "precisions_cholesky_")
        init = "k-means||" if model.init_params == "kmeans" else model.init_params
        out = cls(
            n_components=model.n_components,
            covariance_type=model.covariance_type,
            tol=model.tol,
            reg_covar=model.reg_covar,
            max_iter=model.max_iter,
            n_init=model.n_init,
            init_params=init,
            weight_concentration_prior_type=model.weight_concentration_prior_type,
            weight_concentration_prior=model.weight_concentration_prior,
            mean_precision_prior=model.mean_precision_prior,
            mean_prior=model.mean_prior,
            degrees_of_freedom_prior=model.degrees_of_freedom_prior,
            covariance_prior=model.covariance_prior,
            random_state=model.random_state,
            warm_start=model.warm_start,
        )
        state = FitState(_posterior_of(model), float(model.lower_bound_), bool(model.converged_), int(model.n_iter_))
        set_fitted(out, state)
        out._set_prior(
            VariationalPrior(
                model.weight_concentration_prior_type,
                float(model.weight_concentration_prior_),
                float(model.mean_precision_prior_),
                np.asarray(model.mean_prior_, dtype=np.float64),
                float(model.degrees_of_freedom_prior_),
                np.asarray(model.covariance_prior_, dtype=np.float64),
            )
        )
        out.n_features_in_ = int(model.n_features_in_)
        out.lower_bounds_ = [float(v) for v in getattr(model, "lower_bounds_", [])]
        return out
