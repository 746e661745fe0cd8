"""``GaussianMixture``: the Gaussian mixture fitted by batch EM over the chunks of a dask
array (:class:`~streamem.models.batch.BatchMixture`), with MAP priors, a noise
component, frozen parameters, missing values, standardisation and partial labels.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from streamem.core.covariance import get_covariance
from streamem.core.params import MixtureParams
from streamem.core.prior import Prior
from streamem.engine.em import FitState, GaussianModel, StandardizedModel
from streamem.engine.job import FitJob
from streamem.models.batch import BatchMixture, set_fitted

__all__ = ["GaussianMixture"]

#: ``explore_rows="auto"``: the sample's rows, fewer for wide rows (at most ``EXPLORE_BYTES`` of float64)
EXPLORE_ROWS = 100_000
EXPLORE_BYTES = 2**28


class GaussianMixture(BatchMixture):
    """Gaussian mixture fitted by EM over the chunks of a dask array.

    Each EM iteration is one pass over the data: every row-chunk yields the E-step
    sufficient statistics of every component (sum of responsibilities, of
    responsibility-weighted ``x`` and of ``x x^T``, and the log-likelihood), a tree
    reduction adds them, and the M-step on the client turns the totals into the new
    parameters. Memory stays bounded by the chunk size, whatever the data size.

    By default EM's steps are extrapolated (SQUAREM, ``accelerate="squarem"``), which
    reaches the same optimum in a fraction of the passes where plain EM creeps
    (overlapping components), and the fit stops when the gain still to come is estimated
    below ``tol / 10`` (Aitken's rule), not when one step gains little. With
    ``accelerate=None`` the iterations, ``n_iter_`` and ``converged_`` equal
    :class:`sklearn.mixture.GaussianMixture`'s from the same initial parameters.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Convergence threshold, in nats per sample (of the mean log-likelihood, or of the
        objective under a prior): see ``stopping``.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance.
    max_iter : int, default=100
        Number of EM iterations (passes over the data) at most.
    n_init : int, default=1
        Number of initialisations; the best fit is kept. All share the passes over the data.
    n_starts : int, default=10
        Starts of each initialisation: every start runs ``init_iter`` EM iterations, then
        the best (the highest log-likelihood, or objective; one without a collapsed
        component first) goes on alone to convergence (em-EM, Biernacki, Celeux & Govaert
        2003). The starts share the passes, so they cost computation in the first passes,
        not passes. With ``init_params="auto"`` they are of several kinds in turn, the first
        k-means‖ (k-means‖, random responsibilities, random rows:
        :data:`streamem.engine.starts.AUTO_STARTS`), and a start that duplicates an earlier one (the
        same means, as when Lloyd's iterations take two k-means‖ starts to one partition)
        is replaced by random responsibilities. ``n_init=k`` holds ``n_init=1``'s starts
        among its own, so more initialisations never end lower. 1: one k-means‖ start.
    init_iter : int, "auto" or None, default="auto"
        Iterations of every start before the best is chosen, and of every move's short run;
        None runs every start to convergence and keeps the best (and moves 10 iterations).
        ``"auto"``: 30 on data crowded with local optima, where a pass costs milliseconds
        (fewer than 10,000 rows, or rows of the sample the search runs on, and fewer than
        100 per free parameter of the largest model fitted:
        :func:`streamem.engine.moves.crowded`), 10 otherwise. Once the best has converged,
        a start whose objective plus its last change for each iteration it has left stays
        below the best's stops there (it would end below it as EM's changes shrink): on
        well-separated clusters the short runs end with the best's convergence.
    moves : {"auto", "swap", "split-merge"} or None, default="auto"
        After convergence, moves that leave the local optimum EM stopped at
        (:mod:`streamem.engine.moves`), all in shared passes, each round: one pass
        chooses the pairs of components that explain the same rows and the components least
        like a Gaussian, and draws rows at random; the best few split-and-merge moves
        (Ueda, Nakano, Ghahramani & Hinton 2000: merge a pair, split another) and 20 random
        swaps (Zhao, Hautamäki, Kärkkäinen & Fränti 2012: a component chosen at random
        removed, a broad one put on a drawn row) run ``init_iter`` iterations, and the best
        goes on to convergence, kept only when its objective is higher; until three rounds
        in a row (ten on fewer than 10,000 rows with fewer than 100 per free parameter; 30
        rounds at most) bring nothing better. ``"swap"``: both kinds;
        ``"split-merge"``: merge-and-split moves alone, until none helps (they need three
        components, swaps two); ``"auto"``: ``"swap"``, unless ``weights_init``,
        ``means_init`` and ``precisions_init`` are all given (EM from that start, as
        scikit-learn's). Not with partial labels, frozen parameters or a noise component
        (their components have fixed places). A move restarts EM from the moved
        parameters: the history's records after it (``moved``: the merged pair and the
        split component; ``swapped``: the component removed and the drawn row's index) may
        start below the objective before it, and end above.
    explore_rows : int, "auto" or None, default="auto"
        With more rows than this, the starts are explored on a random sample of this many
        rows, drawn in the first pass (in proportion to the sample weights, each weighing
        the rows it stands for: priority sampling, the same rows on any chunking): the
        initialisation, every start's short run, the best's convergence and the moves run
        in memory (to ``tol``, no finer than 1e-3, in 100 iterations at most), and the best
        of each cell goes on alone over all the rows, without moves (with the optimum it
        had before the moves too, when they won: the first pass keeps the better). Out of
        core a fit then costs a pass for the sample and EM's passes from a start that is
        already near its optimum, instead of the initialisation's passes and the starts'.
        ``"auto"``: 100,000 rows, fewer for rows wider than 335 features
        (256 MiB of float64). None: every start runs on all the rows. Not with partial
        labels, frozen parameters, a noise component, given initial parameters or a warm
        start (their starts are not explored).
    init_params : {"auto", "k-means||", "trimmed-k-means||", "k-means++", "random", "random_from_data", \
"kmeans"}, default="auto"
        How the candidates are initialised. ``"auto"``: ``"trimmed-k-means||"`` (a start that
        outliers cannot capture) with ``noise="uniform"``, ``"k-means||"`` otherwise;
        ``"kmeans"`` (scikit-learn's name) is ``"k-means||"``.
    weights_init : array-like of shape (n_components,), default=None
    means_init : array-like of shape (n_components, n_features), default=None
    precisions_init : array-like, default=None
        Shapes as ``precisions_`` for the covariance type.
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
        Start the next ``fit`` from the current parameters.
    verbose : int, default=0
        1 logs a line per fit, 2 a line per iteration (at INFO level, through
        ``logging.getLogger("streamem")``).
    verbose_interval : int, default=10
        Iterations between the lines logged when ``verbose >= 2``.
    weight_concentration_prior : float >= 1, default=None
        Concentration of a symmetric Dirichlet prior on the weights (MAP estimation).
    mean_prior : array-like of shape (n_features,), default=None
        Mean of the Normal prior on the means; default: the data's centre.
    mean_precision_prior : float > 0, default=None
        The Normal prior on each mean has covariance ``covariance_k / mean_precision_prior``;
        None puts no prior on the means.
    covariance_prior : float or array-like, default=None
        Scale matrix of the inverse-Wishart prior on the covariances, in the covariance
        type's shape: (D, D) for full and tied, (D,) for diag, a float for spherical.
    degrees_of_freedom_prior : float > n_features - 1, default=None
        Degrees of freedom of that prior; default n_features. With any prior the M-step
        returns the posterior mode (see :mod:`streamem.core.prior`), still in one pass, and
        ``lower_bound_`` includes the log-prior per sample.
    missing : {"error", "marginalize"}, default="error"
        What NaN values mean. ``"error"`` rejects them; ``"marginalize"`` treats them as
        missing: the E-step uses each row's observed values only and the statistics the
        conditional expectations of the missing ones (exact EM for the observed-data
        likelihood, :mod:`streamem.core.missing`). Rows with every value missing are ignored
        and counted in ``n_rows_ignored_``. Initialisation uses the complete rows.
    noise : {"uniform"}, default=None
        A noise component (mclust's ``Vinv``): constant density over the data's bounding
        box (from one pass before initialisation), its weight estimated (``noise_weight_``,
        starting at 0.05; the Gaussians' ``weights_`` sum to the rest). ``predict`` gives -1
        to the rows it explains best, ``predict_proba`` one more column, last, for it. Not
        with a prior or missing values.
    freeze : tuple of {"weights", "means", "covariances"}, default=()
        Parameters held at their initial values (``weights_init``, ``means_init``,
        ``precisions_init``, which must be given) through EM; the others maximise the
        likelihood given them (with the means held, the covariances are the scatter about
        them). Not with a prior.
    checkpoint : str or path, default=None
        A directory where the fit saves its state (every candidate's parameters, iteration
        and history) after initialisation and after every iteration, atomically. Fitting
        again with the same checkpoint, data and parameters resumes from the last saved
        iteration and ends with the result of an uninterrupted fit (for jobs that get
        pre-empted). A finished fit's checkpoint gives its result at once.
    scheduler_address : str, default=None
        A dask scheduler, ``tcp://HOST:PORT``, to run the fit on (connected for the fit's
        duration). Without it, a ``distributed.Client`` already active is used, then
        dask's ``scheduler-address`` setting (``DASK_SCHEDULER_ADDRESS``), then the local
        threads.
    persist : bool or "auto", default=False
        Keep dask or zarr input in (worker) memory for the iterations: never (False: every
        pass re-reads the chunks, so memory stays bounded whatever the data size), always
        (True), or when the data fits within ``persist_fraction`` of the memory ("auto":
        the workers' memory limits on a cluster, the available memory locally).
    persist_fraction : float in (0, 1], default=0.5
    timeout : float, default=None
        On a distributed cluster, seconds one pass over the data may take before the fit
        raises ``TimeoutError`` (None: no limit). Losing the scheduler raises
        ``ConnectionError`` at once; with a ``checkpoint`` the fit resumes when run again.
    standardize : bool, default=False
        Fit on standardised features: each feature's mean and standard deviation
        (weighted, NaN ignored; scikit-learn's ``StandardScaler``) are computed in the
        first pass, exactly (merged over chunks in float64), the initialisation reads
        ``(x - mean) / scale``, and EM runs on the standardised features without computing
        them (:class:`~streamem.engine.em.StandardizedModel`: each E-step reads ``x``, with the
        parameters mapped to its units, and maps its statistics back, so a pass costs what
        it costs without standardising). The fitted parameters are reported in the data's units
        (the same mixture, mapped back), so every prediction applies the transform, and
        ``lower_bound_`` is the log-likelihood of the data itself. The transform is kept
        as ``scaler_mean_`` and ``scaler_scale_`` (saved with the model). ``means_init``
        and ``precisions_init`` are in the data's units; priors apply to the standardised
        features. Not with ``covariance_type='spherical'`` (a different scale per feature
        makes spherical components diagonal).
    feature_dim : str, default=None
        For xarray ``DataArray`` inputs: the dimension that holds the features (default:
        the last); :meth:`fit` takes it too.
    accelerate : {"squarem", "quasi-newton"} or None, default="squarem"
        ``"squarem"`` extrapolates EM's steps (Varadhan & Roland 2008; see
        :mod:`streamem.engine.accelerate`): after two EM steps the next point is taken along their
        path as far as the S3 step length says, on log-weights, means and precision
        Cholesky factors (so it is always a valid mixture), and kept only if its objective
        is no lower, otherwise the fit goes on from the plain EM step. ``"quasi-newton"``
        takes the next point by a quasi-Newton step from the last three pairs of EM steps
        (Zhou, Alexander & Lange 2011), with the same safeguard: fewer passes where EM
        creeps, sometimes more than plain EM where it is fast. Each pass still evaluates
        one point per candidate; ``n_init`` candidates share the passes. None is plain EM:
        one M-step per pass, scikit-learn's iterations.
    stopping : {"auto", "aitken", "change"}, default="auto"
        When a candidate has converged. ``"aitken"``: when the gain still to come, by
        Aitken's estimate from three consecutive EM objectives (taken ten times over, as
        EM's rate of convergence rises as it goes), is below ``tol / 10`` and the last change
        below ``tol``; a fit that creeps (a rate near one) is not stopped.
        ``"change"``: when the objective changes by less than ``tol`` (scikit-learn's rule,
        which stops slow fits far from their optimum). ``"auto"``: ``"aitken"`` with an
        acceleration, ``"change"`` with ``accelerate=None``.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
    converged_ : bool
    n_iter_ : int
        EM iterations, one pass over the data each.
    n_passes_ : int
        Passes over the data the fit made, initialisation included (a resumed fit's before
        the checkpoint too).
    lower_bound_ : float
        Mean log-likelihood per sample at the last accepted iteration's E-step.
    lower_bounds_ : list of float
        ``lower_bound_`` after every iteration, as in scikit-learn (a rejected
        extrapolation leaves it where it was).
    means_history_ : ndarray of shape (n_iter + 1, n_components, n_features)
        The means before the first iteration and after each one.
    n_features_in_ : int
    history_ : list of dict
        One dict per iteration: ``iteration``, ``passes`` (over the data so far,
        initialisation included), ``log_likelihood`` (mean per sample, at the point the
        pass evaluated), ``change`` (from the last accepted point), ``step`` (the
        extrapolation's step length, 1 for an EM point), ``accepted`` (False for an
        extrapolated point whose objective was lower: the fit went on without it),
        ``seconds``, ``reseeded`` (components re-seeded at this iteration) when any was, and
        ``moved`` (the merged pair and the split component) on the first iteration after a
        split-and-merge move.

    Examples
    --------
    >>> import numpy as np, streamem
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (500, 2)), rng.normal(5, 1, (500, 2))])
    >>> gm = streamem.GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> sorted(np.round(gm.means_[:, 0]).astype(int).tolist())
    [-5, 5]
    """

    model_name = "gaussian"

    #: the class of the model :func:`~streamem.engine.em.run_em` runs (a
    #: :class:`~streamem.engine.contract.MixtureModel`); here a :class:`~streamem.engine.em.GaussianModel`,
    #: whose subclasses (another M-step on the same statistics) need nothing else (the docs'
    #: "Adding a mixture")
    model_class: ClassVar[type] = GaussianModel

    @property
    def _expects_outliers(self) -> bool:
        """Whether the model expects outliers, so that ``init_params="auto"`` starts from
        ``"trimmed-k-means||"``."""
        return self.noise == "uniform"

    _parameter_constraints: dict = {
        **BatchMixture._batch_constraints,
        "weight_concentration_prior": [Interval(Real, 1.0, None, closed="left"), None],
        "mean_prior": ["array-like", None],
        "mean_precision_prior": [Interval(Real, 0.0, None, closed="neither"), None],
        "covariance_prior": ["array-like", Interval(Real, 0.0, None, closed="neither"), None],
        "degrees_of_freedom_prior": [Interval(Real, 0.0, None, closed="neither"), None],
        "noise": [StrOptions({"uniform"}), None],
        "standardize": ["boolean"],
        "feature_dim": [str, None],
        "explore_rows": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        n_starts=10,
        init_iter="auto",
        init_params="auto",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        weight_concentration_prior=None,
        mean_prior=None,
        mean_precision_prior=None,
        covariance_prior=None,
        degrees_of_freedom_prior=None,
        missing="error",
        freeze=(),
        noise=None,
        checkpoint=None,
        scheduler_address=None,
        persist=False,
        persist_fraction=0.5,
        timeout=None,
        standardize=False,
        feature_dim=None,
        accelerate="squarem",
        stopping="auto",
        moves="auto",
        explore_rows="auto",
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
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_prior = mean_prior
        self.mean_precision_prior = mean_precision_prior
        self.covariance_prior = covariance_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.missing = missing
        self.freeze = freeze
        self.noise = noise
        self.checkpoint = checkpoint
        self.scheduler_address = scheduler_address
        self.persist = persist
        self.persist_fraction = persist_fraction
        self.timeout = timeout
        self.standardize = standardize
        self.feature_dim = feature_dim
        self.accelerate = accelerate
        self.stopping = stopping
        self.moves = moves
        self.explore_rows = explore_rows

    #: the hyper-parameters that make a prior (``mean_prior`` alone does not)
    PRIOR_PARAMETERS = (
        "weight_concentration_prior",
        "mean_precision_prior",
        "covariance_prior",
        "degrees_of_freedom_prior",
    )

    def _model(self, job: FitJob, shift: np.ndarray) -> GaussianModel | StandardizedModel:
        """The model :func:`~streamem.engine.em.run_em` fits: the Gaussian mixture, MAP under a prior;
        on standardised features when the fit standardises."""
        prior, freeze = self._prior(job.chunked.n_features, shift), self._frozen()
        if prior is not None and freeze:
            raise ValueError("freeze holds parameters at their initial values: it cannot be combined with a prior")
        if prior is not None and self.noise:
            raise ValueError("noise='uniform' cannot be combined with a prior")
        model = self.model_class(
            self.covariance_type, self.reg_covar, shift, prior, self.missing == "marginalize", freeze
        )
        return model if job.scaling is None else StandardizedModel(model, job.scaling)

    def _prior(self, n_features: int, shift: np.ndarray) -> Prior | None:
        """The conjugate prior of the hyper-parameters, or None for maximum likelihood."""
        if all(getattr(self, name) is None for name in self.PRIOR_PARAMETERS):
            return None
        if self.degrees_of_freedom_prior is not None and self.covariance_prior is None:
            raise ValueError("degrees_of_freedom_prior needs covariance_prior, the scale of the inverse-Wishart prior")
        mean = shift if self.mean_prior is None else np.asarray(self.mean_prior, dtype=np.float64)
        if mean.shape != (n_features,):
            raise ValueError(f"expected mean_prior of shape ({n_features},), got {mean.shape}")
        psi = None
        if self.covariance_prior is not None:
            psi = np.asarray(self.covariance_prior, dtype=np.float64)
            get_covariance(self.covariance_type).check_prior(psi, n_features)
        nu = float(n_features if self.degrees_of_freedom_prior is None else self.degrees_of_freedom_prior)
        if nu <= n_features - 1:
            raise ValueError(f"expected degrees_of_freedom_prior > n_features - 1 = {n_features - 1}, got {nu}")
        return Prior(self.weight_concentration_prior, mean, self.mean_precision_prior, psi, nu, self.covariance_type)

    def _explore_size(self, n_features: int) -> int | None:
        """The rows of ``explore_rows``' sample, or None for no sample."""
        size = self.explore_rows
        if size == "auto":
            return max(min(EXPLORE_ROWS, EXPLORE_BYTES // (8 * n_features)), 1)
        return size

    # --------------------------------------------------------------- sklearn

    @classmethod
    def from_sklearn(cls, model) -> GaussianMixture:
        """A streamem model equivalent to a fitted :class:`sklearn.mixture.GaussianMixture`."""
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
            random_state=model.random_state,
            warm_start=model.warm_start,
        )
        params = MixtureParams(
            np.asarray(model.weights_, dtype=np.float64),
            np.asarray(model.means_, dtype=np.float64),
            np.asarray(model.covariances_, dtype=np.float64),
            np.asarray(model.precisions_cholesky_, dtype=np.float64),
            model.covariance_type,
        )
        set_fitted(out, FitState(params, float(model.lower_bound_), bool(model.converged_), int(model.n_iter_)))
        out.n_features_in_ = int(model.n_features_in_)
        out.lower_bounds_ = [float(v) for v in getattr(model, "lower_bounds_", [])]
        return out
