"""The ``streamem`` command line (the edge: nothing in the library imports it).

Exit codes: 0 on success, 2 for a usage error, 1 for bad data or any other failure, with one
line on stderr (the traceback too with ``--debug``). Outputs are written to a temporary
name and renamed, so a failed command leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from pathlib import Path

import click
import numpy as np

from streamem.cli.logs import command, jsonable
from streamem.cli.progress import pass_bars, progress_bar
from streamem.core.covariance import COVARIANCE_TYPES
from streamem.data.arrays import write_array
from streamem.data.generate import mixture_data
from streamem.data.store import atomic_path

__all__ = ["main"]

COVARIANCE_CHOICES = list(COVARIANCE_TYPES)
# streamem.engine.starts.INIT_METHODS, without importing the initialisers at start-up (a test checks they agree)
INIT_CHOICES = ["auto", "k-means||", "trimmed-k-means||", "k-means++", "random", "random_from_data", "kmeans"]


@contextlib.contextmanager
def _scheduler(address: str | None, workers: int | None, quiet: bool):
    """Run inside a dask.distributed client when asked; otherwise the local threads."""
    if address and workers:
        raise click.UsageError("give either --scheduler or --workers, not both")
    if not address and not workers:
        yield
        return
    from distributed import Client

    from streamem.engine.cluster import client_of, local_cluster

    if address:
        client = client_of(address)
        cluster = None
    else:
        cluster = local_cluster(workers, dashboard_address="127.0.0.1:0")
        client = Client(cluster)
    try:
        if not quiet:
            click.echo(f"dask dashboard: {client.dashboard_link}", err=True)
        yield
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class _ComponentsType(click.ParamType):
    """``K``, ``A:B`` (A to B inclusive) or ``A,B,C``, as a sorted list of integers >= 1."""

    name = "K|A:B|A,B,..."

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            if ":" in value:
                low, high = (int(part) for part in value.split(":"))
                ks = list(range(low, high + 1))
            else:
                ks = [int(part) for part in value.split(",")]
        except ValueError:
            self.fail(f"expected K, A:B or A,B,C with integers, got {value!r}", param, ctx)
        if not ks or min(ks) < 1:
            self.fail(f"expected numbers of components >= 1, got {value!r}", param, ctx)
        return sorted(set(ks))


class _TypesType(click.ParamType):
    """One covariance type or several, comma-separated (``full,diag``), as a list."""

    name = "TYPE[,TYPE...]"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        types = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
        unknown = [t for t in types if t not in COVARIANCE_CHOICES]
        if not types or unknown:
            self.fail(f"expected covariance types among {', '.join(COVARIANCE_CHOICES)}, got {value!r}", param, ctx)
        return types


class _ModelType(click.ParamType):
    """An estimator's short name, as the registry knows it (:func:`~streamem.models.base.estimator_names`);
    ``streams``: of those that learn from batches as they come."""

    name = "model"

    def __init__(self, streams: bool = False):
        self.streams = streams

    def convert(self, value, param, ctx):
        from streamem.models.base import estimator_class, estimator_names

        names = estimator_names(self.streams)
        if value not in names:
            self.fail(f"expected one of {', '.join(names)}, got {value!r}", param, ctx)
        return estimator_class(value)


def _estimator(cls, options: dict, **params):
    """An estimator of class ``cls`` with ``params``, and those of ``options`` (a click
    parameter's name: the estimator's parameter and its value) that it takes. An option
    given on the command line that the estimator does not take is a usage error; left at
    its default, it is left out."""
    ctx = click.get_current_context()
    accepted = set(cls._get_param_names())
    for option, (name, value) in options.items():
        if name in accepted:
            params[name] = value
        elif ctx.get_parameter_source(option) is click.core.ParameterSource.COMMANDLINE:
            flag = next(p.opts[0] for p in ctx.command.params if p.name == option)
            raise click.UsageError(f"{flag} does not apply to --model {cls.model_name}")
    return cls(**params)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamem")
def main() -> None:
    """Gaussian mixtures fitted by EM on data larger than memory, on Dask.

    \b
    streamem make-data points.zarr --n-samples 1000000 --n-features 8 --n-components 5
    streamem fit points.zarr --n-components 5 --out model.zarr
    streamem predict model.zarr points.zarr --out labels.zarr
    streamem plot model.zarr points.zarr --out model.png
    """


def _storage_options(func):
    """The repeatable ``--storage-option KEY=VALUE``, given to the command as a dict."""

    @click.option(
        "--storage-option",
        "storage_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="An option of the file system of s3:// (or any fsspec) URLs, e.g. endpoint_url=http://...; "
        "repeatable. Credentials otherwise come from the store's usual environment.",
    )
    @functools.wraps(func)
    def wrapper(*args, storage_options, **kwargs):
        from streamem.data.storage import parse_storage_options

        try:
            options = parse_storage_options(storage_options)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--storage-option") from None
        return func(*args, storage_options=options or None, **kwargs)

    return wrapper


@main.command("make-data")
@click.argument("out", type=click.Path())
@click.option("--n-samples", required=True, type=click.IntRange(min=1), help="Rows to generate.")
@click.option("--n-features", required=True, type=click.IntRange(min=1), help="Columns.")
@click.option("--n-components", required=True, type=click.IntRange(min=1), help="True mixture components.")
@click.option("--chunk-size", default=100_000, show_default=True, type=click.IntRange(min=1), help="Rows per chunk.")
@click.option("--seed", default=0, show_default=True, type=int)
@_storage_options
@command
def make_data(out, n_samples, n_features, n_components, chunk_size, seed, storage_options, quiet, log_json):
    """Write a generated Gaussian mixture (X and its true labels) to a zarr store (a path or
    an s3:// or other fsspec URL), chunk by chunk."""
    from streamem.data.generate import make_data as write

    start = time.perf_counter()
    with progress_bar(not quiet and not log_json):
        write(out, n_samples, n_features, n_components, chunk_size, seed, storage_options)
    _report(
        log_json,
        f"wrote {n_samples} x {n_features} to {out} in {time.perf_counter() - start:.1f} s",
        {"event": "done", "out": str(out), "n_samples": n_samples, "n_features": n_features},
    )


def _report(log_json: bool, text: str, data: dict) -> None:
    click.echo(json.dumps(jsonable(data)) if log_json else text)


def _count_or(value: str, what: str, minimum: int, words: dict):
    """An option that takes a count of ``what`` (at least ``minimum``) or one of ``words``
    (each word's value): ``--init-iter``, ``--explore-rows``."""
    if value.lower() in words:
        return words[value.lower()]
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise click.BadParameter(f"expected a number of {what} >= {minimum} or {' or '.join(words)}, got {value!r}")
    return number


def _parse_columns(columns: str | None):
    return [c.strip() for c in columns.split(",") if c.strip()] if columns else None


@main.command()
@click.argument("data", type=click.Path())
@click.option(
    "--n-components",
    required=True,
    type=_ComponentsType(),
    help="K, or several to choose from by BIC: A:B (A to B) or A,B,C.",
)
@click.option(
    "--criterion",
    default="bic",
    show_default=True,
    type=click.Choice(["bic", "icl", "aic"]),
    help="How several candidates are compared (lower is better).",
)
@click.option(
    "--covariance-type",
    default="full",
    show_default=True,
    type=_TypesType(),
    help="A covariance type, or several to compare: full,tied,diag,spherical.",
)
@click.option("--max-iter", default=100, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--tol",
    default=1e-3,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Convergence tolerance, in nats per row.",
)
@click.option("--reg-covar", default=1e-6, show_default=True, type=click.FloatRange(min=0))
@click.option(
    "--n-init",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Initialisations, in the same passes; the best fit is kept.",
)
@click.option(
    "--n-starts",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Starts of each initialisation, in the same passes: each runs --init-iter iterations, then "
    "the best goes on alone.",
)
@click.option(
    "--moves",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "swap", "split-merge", "none"]),
    help="Moves after convergence: split-and-merge moves and random swaps (swap; auto: swap), "
    "split-and-merge moves alone, or none.",
)
@click.option(
    "--init-iter",
    default="auto",
    show_default=True,
    callback=lambda ctx, param, value: _count_or(value, "iterations", 0, {"none": None, "auto": "auto"}),
    help="Iterations of every start before the best is chosen, and of every move's short run; none runs "
    "every start to convergence; auto: 30 on fewer than 10,000 rows with fewer than 100 per free "
    "parameter, 10 otherwise.",
)
@click.option(
    "--explore-rows",
    default="auto",
    show_default=True,
    callback=lambda ctx, param, value: _count_or(value, "rows", 1, {"auto": "auto", "none": None}),
    help="With more rows than this, the starts are explored on a random sample of this many rows "
    "(auto: 100,000, fewer for wide rows), and only the best goes on over all of them; none: "
    "every start over all the rows.",
)
@click.option(
    "--accelerate",
    default="squarem",
    show_default=True,
    type=click.Choice(["squarem", "quasi-newton", "none"]),
    help="Extrapolated EM steps (SQUAREM, or quasi-Newton steps), or none for plain EM (scikit-learn's iterations).",
)
@click.option(
    "--stopping",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "aitken", "change"]),
    help="When to stop: aitken (the estimated gain still to come is below tol/10), change (the "
    "last change is below tol, scikit-learn's rule); auto: aitken with --accelerate, else "
    "change.",
)
@click.option(
    "--init",
    "init_params",
    default="auto",
    show_default=True,
    type=click.Choice(INIT_CHOICES),
    help='"auto" is "k-means||" for this model, "trimmed-k-means||" (a start that outliers cannot '
    "capture) for models that expect outliers.",
)
@click.option("--seed", default=None, type=int, help="Random seed (default: not reproducible).")
@click.option("--columns", default=None, help="Comma-separated columns (names of a table, positions of an array).")
@click.option("--scheduler", default=None, envvar="DASK_SCHEDULER_ADDRESS", help="A dask scheduler, tcp://HOST:PORT.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Start a local cluster of N processes.")
@click.option(
    "--checkpoint",
    default=None,
    type=click.Path(),
    help="Directory to save the fit's state after every iteration; the same command resumes from it.",
)
@click.option(
    "--standardize",
    is_flag=True,
    help="Fit on standardised features (mean and spread from the first pass); the model keeps the "
    "transform and reports its parameters in the data's units.",
)
@click.option(
    "--model",
    "estimator",
    default="gaussian",
    show_default=True,
    type=_ModelType(),
    help="The estimator, by its registered name: gaussian (GaussianMixture), t (StudentTMixture, "
    "heavy tails), bayesian (BayesianGaussianMixture: unneeded components fade out), online "
    "(OnlineGaussianMixture, mini-batches).",
)
@click.option("--out", required=True, type=click.Path(), help="Where to save the model (zarr).")
@_storage_options
@command
def fit(
    data,
    n_components,
    criterion,
    covariance_type,
    max_iter,
    tol,
    reg_covar,
    n_init,
    n_starts,
    moves,
    init_iter,
    explore_rows,
    accelerate,
    stopping,
    init_params,
    seed,
    columns,
    scheduler,
    workers,
    checkpoint,
    standardize,
    estimator,
    out,
    storage_options,
    quiet,
    log_json,
):
    """Fit a mixture to DATA and save it to --out. DATA is a zarr array, .npy, .csv, Parquet
    (a file or a data set), FILE.h5:/group/dataset or FILE.nc:variable; a local path or an
    s3:// (or other fsspec) URL.

    With several values of --n-components or of --covariance-type, every candidate is
    fitted in the same passes over the data and the one with the lowest --criterion is
    saved, with the table of all."""
    from streamem.data.arrays import read_data
    from streamem.data.store import check_model_path
    from streamem.models.select import select_n_components, table_estimator

    check_model_path(out, storage_options)
    X = read_data(data, _parse_columns(columns), storage_options)
    options = {
        "tol": ("tol", tol),
        "reg_covar": ("reg_covar", reg_covar),
        "max_iter": ("max_iter", max_iter),
        "n_init": ("n_init", n_init),
        "n_starts": ("n_starts", n_starts),
        "init_iter": ("init_iter", init_iter),
        "explore_rows": ("explore_rows", explore_rows),
        "moves": ("moves", None if moves == "none" else moves),
        "init_params": ("init_params", init_params),
        "seed": ("random_state", seed),
        "stopping": ("stopping", stopping),
        "accelerate": ("accelerate", None if accelerate == "none" else accelerate),
        "checkpoint": ("checkpoint", checkpoint),
        "standardize": ("standardize", standardize),
    }
    several = len(n_components) > 1 or len(covariance_type) > 1
    if several:
        try:
            table_estimator(estimator.model_name)
        except ValueError as exc:
            raise click.UsageError(f"several --n-components or --covariance-type: {exc}") from None
    start = time.perf_counter()
    with _scheduler(scheduler, workers, quiet), pass_bars(not quiet and not log_json):
        if not several:
            gm = _estimator(
                estimator,
                options,
                n_components=n_components[0],
                covariance_type=covariance_type[0],
                verbose=2,
                verbose_interval=1,
            )
            gm.fit(X, storage_options=storage_options)
        else:
            params = {name: value for name, value in options.values()}
            gm = select_n_components(
                X,
                n_components,
                criterion,
                covariance_type=covariance_type,
                model=estimator.model_name,
                verbose=2,
                verbose_interval=1,
                storage_options=storage_options,
                **params,
            )
    seconds = time.perf_counter() - start
    gm.save(out, storage_options)
    if several and not log_json:
        click.echo(" covariance      K          BIC          ICL          AIC   log-lik  iterations")
        for row in gm.selection_:
            mark = (
                " <"
                if (row["n_components"], row["covariance_type"]) == (gm.n_components, gm.covariance_type)
                else " collapsed"
                if row.get("collapsed")
                else ""
            )
            click.echo(
                f"{row['covariance_type']:>11} {row['n_components']:>6} {row['bic']:>12.1f} {row['icl']:>12.1f}"
                f" {row['aic']:>12.1f} {row['log_likelihood']:>9.4f} {row['n_iter']:>11}{mark}"
            )
    _report(
        log_json,
        f"fitted K={gm.n_components} {gm.covariance_type} on {X.shape[0]} x {X.shape[1]}: {gm.n_iter_} iterations "
        f"({gm.n_passes_} passes over the data) in {seconds:.1f} s, converged={gm.converged_}, "
        f"{'lower bound (ELBO)' if gm.variational else 'mean log-likelihood'} {gm.lower_bound_:.6f}; saved {out}",
        {
            "event": "done",
            "n_components": gm.n_components,
            "n_iter": gm.n_iter_,
            "n_passes": gm.n_passes_,
            "converged": bool(gm.converged_),
            "lower_bound": gm.lower_bound_,
            "seconds": seconds,
            "out": str(out),
            "selection": getattr(gm, "selection_", None),
        },
    )


def _load_and_read(model_path, data_path, columns, storage_options=None):
    from streamem.data.arrays import read_data
    from streamem.models.base import load

    gm = load(model_path, storage_options)
    X = read_data(data_path, _parse_columns(columns), storage_options)
    if X.shape[1] != gm.n_features_in_:
        raise ValueError(f"{data_path} has {X.shape[1]} features, but the model expects {gm.n_features_in_}")
    return gm, X


@main.command()
@click.argument("model", type=click.Path())
@click.argument("data", type=click.Path())
@click.option(
    "--out",
    required=True,
    type=click.Path(),
    help="Labels: .zarr or .npy; or DATA labelled: .parquet (the input's columns and component, "
    "responsibility, log_density), .zarr with --labelled (the data X and those arrays).",
)
@click.option("--proba", is_flag=True, help="Write responsibilities (n_samples x K) instead of labels.")
@click.option("--labelled", is_flag=True, help="With a .zarr --out: a group with the data and its labels.")
@click.option(
    "--threshold",
    default=None,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    metavar="Q",
    help="Mark the rows whose log-density is below its Q-quantile over DATA as outliers: label -1, or "
    "the column outlier of a labelled output (one more pass).",
)
@click.option("--columns", default=None, help="Comma-separated columns (names of a table, positions of an array).")
@_storage_options
@command
def predict(model, data, out, proba, labelled, threshold, columns, storage_options, quiet, log_json):
    """Write the labels (or responsibilities) of DATA under MODEL to --out, chunk by chunk;
    or DATA labelled (a .parquet --out, or a .zarr one with --labelled), partition by partition."""
    from streamem.data.annotated import outlier_threshold, write_annotated

    suffix = os.path.splitext(str(out).rstrip("/"))[1].lower()
    labelled = labelled or suffix in (".parquet", ".pq")
    if proba and (labelled or threshold is not None):
        raise click.UsageError("--proba writes responsibilities alone: not with --labelled, .parquet or --threshold")
    if labelled and suffix not in (".parquet", ".pq", ".zarr"):
        raise click.UsageError(f"a labelled output ends in .parquet or .zarr, got {out}")
    gm, X = _load_and_read(model, data, columns, storage_options)
    cut = None
    with progress_bar(not quiet and not log_json):
        if threshold is not None:
            cut = outlier_threshold(gm, X, threshold)
        if labelled:
            written = write_annotated(gm, data, out, _parse_columns(columns), cut, storage_options)
            rows, what = written["rows"], "labelled rows"
        else:
            result = gm.predict_proba(X) if proba else gm.predict(X)
            if cut is not None:  # outliers: label -1
                summary = gm.predict_summary(X)
                result = (summary[:, 0] * (summary[:, 2] >= cut) - (summary[:, 2] < cut)).astype(np.int64)
            write_array(result, out, storage_options)
            rows, what = int(result.shape[0]), "responsibilities" if proba else "labels"
    extra = "" if cut is None else f"; outliers below log-density {cut:.6g} (the {threshold} quantile)"
    _report(
        log_json,
        f"wrote {what} of {rows} rows to {out}{extra}",
        {"event": "done", "out": str(out), "rows": rows, "what": what, "outlier_threshold": cut},
    )


@main.command()
@click.argument("model", type=click.Path())
@click.argument("data", type=click.Path())
@click.option("--columns", default=None, help="Comma-separated columns (names of a table, positions of an array).")
@click.option("--per-row", is_flag=True, help="Write each row's log-density to --out instead of the summary.")
@click.option("--out", default=None, type=click.Path(), help="With --per-row: where (.zarr or .npy).")
@_storage_options
@command
def score(model, data, columns, per_row, out, storage_options, quiet, log_json):
    """Mean log-likelihood, BIC and AIC of DATA under MODEL (one pass); with --per-row, each
    row's log-density written to --out."""
    if per_row != (out is not None):
        raise click.UsageError("--per-row and --out go together")
    gm, X = _load_and_read(model, data, columns, storage_options)
    n_samples = X.shape[0]
    if per_row:
        with progress_bar(not quiet and not log_json):
            write_array(gm.score_samples(X), out, storage_options)
        _report(
            log_json,
            f"wrote the log-densities of {n_samples} rows to {out}",
            {"event": "done", "out": str(out), "rows": int(n_samples), "what": "log_density"},
        )
        return
    with progress_bar(not quiet and not log_json):
        mean = float(gm.score_samples(X).mean().compute())
    if gm.variational:  # no BIC or AIC of a variational bound
        _report(
            log_json,
            f"mean score_samples (the variational E-step's log-normaliser): {mean:.6f}",
            {"event": "score", "log_likelihood": mean, "n_samples": n_samples},
        )
        return
    bic, aic = gm.information_criteria(mean * n_samples, n_samples)
    _report(
        log_json,
        f"mean log-likelihood: {mean:.6f}\nBIC: {bic:.6f}\nAIC: {aic:.6f}",
        {"event": "score", "log_likelihood": mean, "bic": bic, "aic": aic, "n_samples": n_samples},
    )


@main.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON object.")
@_storage_options
@command
def info(model, as_json, storage_options, quiet, log_json):
    """A readable summary of a saved MODEL."""
    from streamem.models.base import load

    gm = load(model, storage_options)
    summary = {
        "path": str(model),
        "covariance_type": gm.covariance_type,
        "n_components": gm.n_components,
        "n_features": gm.n_features_in_,
        "n_parameters": gm.fitted_params().n_parameters(),
        "converged": bool(gm.converged_),
        "n_iter": gm.n_iter_,
        "lower_bound": gm.lower_bound_,
        "weights": gm.weights_.tolist(),
        "means": gm.means_.tolist(),
        "estimator": type(gm).__name__,
    }
    online = hasattr(gm, "n_batches_")
    if online:
        summary.update(n_batches=gm.n_batches_, n_samples_seen=gm.n_samples_seen_)
    if as_json or log_json:
        click.echo(json.dumps(jsonable(summary)))
        return
    variational = gm.variational
    if variational:
        summary["n_components_effective"] = gm.n_components_effective_
    if online:
        bound = "running lower bound (ELBO)" if variational else "running mean log-likelihood"
        progress = f"  {gm.n_batches_} batches, {gm.n_samples_seen_} rows seen, {bound}: {gm.lower_bound_:.6f}"
    else:
        bound = "lower bound (ELBO)" if variational else "mean log-likelihood"
        progress = f"  {gm.n_iter_} iterations, converged: {gm.converged_}, {bound}: {gm.lower_bound_:.6f}"
    if variational:
        progress += f"\n  {gm.n_components_effective_} components in use (expected weight >= 1e-3)"
    lines = [
        f"streamem {summary['estimator']} at {model}",
        f"  {gm.n_components} components, {gm.n_features_in_} features, {gm.covariance_type} covariances "
        f"({summary['n_parameters']} free parameters)",
        progress,
        "  component  weight    mean",
    ]
    with np.printoptions(precision=4, suppress=True, threshold=8, edgeitems=3):
        for k, (weight, mean) in enumerate(zip(gm.weights_, gm.means_)):
            lines.append(f"  {k:>9}  {weight:.4f}    {mean}")
    click.echo("\n".join(lines))


@main.command(name="export-onnx")
@click.argument("model", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--float32", "single", is_flag=True, help="Take float32 input and compute in float32.")
@_storage_options
@command
def export_onnx(model, out, single, storage_options, quiet, log_json):
    """Write MODEL's predict, predict_proba and score_samples as an ONNX graph to OUT.

    The graph's input is X (rows x features); its outputs are label, probabilities and
    score_samples. Needs the onnx extra: pip install 'streamem[onnx]'.
    """
    from streamem.models.base import load

    gm = load(model, storage_options)
    gm.to_onnx(out, dtype=np.float32 if single else np.float64)
    _report(
        log_json,
        f"wrote {out}: inputs X (n x {gm.n_features_in_}), outputs label, probabilities, score_samples",
        {"event": "done", "out": str(out), "n_features": int(gm.n_features_in_)},
    )


@main.command()
@click.argument("model", type=click.Path())
@click.argument("data", required=False, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Image file (.png).")
@click.option(
    "--projection",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "first", "pca"]),
    help="2-D view of the data: the first two features, or a PCA projection (auto: PCA above 2 features).",
)
@click.option(
    "--sample",
    "n_points",
    default=5000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Points drawn from DATA for the 2-D view.",
)
@click.option("--columns", default=None, help="Comma-separated columns (names of a table, positions of an array).")
@_storage_options
@command
def plot(model, data, out, projection, n_points, columns, storage_options, quiet, log_json):
    """Plot the convergence curve, the trajectory of the means and, with DATA, a 2-D view."""
    from streamem import plot as plots
    from streamem.models.base import load

    if data is not None:
        gm, X = _load_and_read(model, data, columns, storage_options)
        points = plots.sample_rows(X, n_points, seed=0)
    else:
        gm, points = load(model, storage_options), None
    with atomic_path(out, suffix=Path(out).suffix or ".png") as tmp:
        plots.model_figure(gm, points, projection=projection).savefig(tmp, dpi=110)
    _report(log_json, f"wrote {out}", {"event": "done", "out": str(out)})


@main.command()
@click.option("--n-samples", default=200_000, show_default=True, type=click.IntRange(min=1))
@click.option("--n-features", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--n-components", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--covariance-type", default="full", show_default=True, type=click.Choice(COVARIANCE_CHOICES))
@click.option("--chunk-size", default=25_000, show_default=True, type=click.IntRange(min=1), help="Rows per chunk.")
@click.option("--seed", default=0, show_default=True, type=int)
@command
def demo(n_samples, n_features, n_components, covariance_type, chunk_size, seed, quiet, log_json):
    """Fit a mixture to generated data on the local scheduler (no server, no download)."""
    from streamem.models.gaussian import GaussianMixture

    data, _, truth = mixture_data(n_samples, n_features, n_components, chunk_size, seed)
    data = data.persist()  # generated once, not at every pass
    true_means = truth["means"]
    if not quiet and not log_json:
        click.echo(f"data: {n_samples} x {n_features} in {data.numblocks[0]} chunks, {n_components} true components")
    start = time.perf_counter()
    gm = GaussianMixture(
        n_components, covariance_type=covariance_type, random_state=seed, verbose=2, verbose_interval=1
    ).fit(data)
    seconds = time.perf_counter() - start
    nearest = np.abs(gm.means_[:, None, :] - true_means[None]).max(axis=2).min(axis=1)
    _report(
        log_json,
        f"streamem: {gm.n_iter_} iterations ({gm.n_passes_} passes over the data) in {seconds:.2f} s, "
        f"converged={gm.converged_}, mean log-likelihood {gm.lower_bound_:.6f}\n"
        f"largest distance from a fitted mean to its true mean: {nearest.max():.3f}",
        {
            "event": "done",
            "n_iter": gm.n_iter_,
            "n_passes": gm.n_passes_,
            "converged": bool(gm.converged_),
            "lower_bound": gm.lower_bound_,
            "seconds": seconds,
            "max_mean_error": float(nearest.max()),
        },
    )


@main.command()
@click.argument("source")
@click.option("--n-features", required=True, type=click.IntRange(min=1), help="Values per row of a record.")
@click.option("--n-components", required=True, type=click.IntRange(min=1))
@click.option("--checkpoint", required=True, type=click.Path(), help="Checkpoint directory (resumed).")
@click.option("--out", required=True, type=click.Path(), help="The current model, published (zarr).")
@click.option("--covariance-type", default="full", show_default=True, type=click.Choice(COVARIANCE_CHOICES))
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1), help="Rows per update.")
@click.option(
    "--checkpoint-every",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Batches between checkpoints.",
)
@click.option(
    "--checkpoint-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between checkpoints at most.",
)
@click.option(
    "--stop-after-idle",
    default=None,
    type=click.FloatRange(min=0),
    help="Stop when no record came for this many seconds (default: run until signalled).",
)
@click.option("--max-batches", default=None, type=click.IntRange(min=1), help="Stop after this many batches.")
@click.option(
    "--labels",
    default=None,
    type=click.Path(),
    help="Write each row's label to this zarr array, at the row's index in the stream.",
)
@click.option("--step-exponent", default=0.6, show_default=True, type=click.FloatRange(0.5, 1, min_open=True))
@click.option(
    "--forgetting",
    default=None,
    type=click.FloatRange(0, 1, min_open=True),
    help="A constant floor on the step, for drifting streams.",
)
@click.option(
    "--model",
    "estimator",
    default="online",
    show_default=True,
    type=_ModelType(streams=True),
    help="The estimator, by its registered name: online (stepwise EM, OnlineGaussianMixture), "
    "bayesian (stochastic variational inference, BayesianGaussianMixture: unneeded components "
    "fade out), t (stepwise EM of StudentTMixture, heavy tails).",
)
@click.option(
    "--weight-concentration-prior",
    default=None,
    type=click.FloatRange(0, min_open=True),
    help="With --model bayesian: the Dirichlet process's concentration (default 1 / n-components); "
    "smaller leaves fewer components in use.",
)
@click.option(
    "--on-drift",
    default="none",
    show_default=True,
    type=click.Choice(["none", "reset-step"]),
    help="What a drift alarm does besides being logged: reset-step restarts the step sizes.",
)
@click.option(
    "--drift-threshold",
    default=25.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Page-Hinkley threshold, in standard deviations of the batches' mean log-likelihood.",
)
@click.option(
    "--metrics-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics (/metrics) and a health check (/healthz) on 127.0.0.1:PORT.",
)
@click.option(
    "--health-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Seconds without a successful checkpoint after which /healthz fails.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@_storage_options
@command
def stream(
    source,
    n_features,
    n_components,
    checkpoint,
    out,
    covariance_type,
    batch_size,
    checkpoint_every,
    checkpoint_interval,
    stop_after_idle,
    max_batches,
    labels,
    step_exponent,
    forgetting,
    estimator,
    weight_concentration_prior,
    on_drift,
    drift_threshold,
    metrics_port,
    health_timeout,
    seed,
    storage_options,
    quiet,
    log_json,
):
    """Fit an online mixture to a stream, with checkpoints; run again to resume.

    SOURCE is redis://HOST:PORT/STREAM?group=G, nats://HOST:PORT/STREAM?durable=G,
    kafka://BROKER/TOPIC?group=G, zarr:PATH or dir:PATH. A record carries rows of
    little-endian float64 values. SIGTERM or Ctrl-C checkpoint and stop.
    """
    from streamem.stream.runner import run
    from streamem.stream.sources import SourceURLError, open_source

    options = {
        "step_exponent": ("step_exponent", step_exponent),
        "forgetting": ("forgetting", forgetting),
        "seed": ("random_state", seed),
        "weight_concentration_prior": ("weight_concentration_prior", weight_concentration_prior),
    }
    params = {"batch_size": batch_size} if "batch_size" in estimator._get_param_names() else {}
    if estimator.variational:  # a batch fit of the first rows sets the prior: enough of them for every component
        params["warm_up"] = max(batch_size, 250 * n_components)
    model = _estimator(estimator, options, n_components=n_components, covariance_type=covariance_type, **params)
    try:
        opened = open_source(source, n_features, storage_options)
    except SourceURLError as exc:
        raise click.BadParameter(str(exc), param_hint="SOURCE") from None
    result = run(
        opened,
        model,
        checkpoint,
        out,
        batch_size=batch_size,
        checkpoint_every=checkpoint_every,
        checkpoint_interval=checkpoint_interval,
        stop_after_idle=stop_after_idle,
        max_batches=max_batches,
        labels=labels,
        drift_threshold=drift_threshold,
        on_drift=None if on_drift == "none" else on_drift,
        metrics_port=metrics_port,
        health_timeout=health_timeout,
        storage_options=storage_options,
    )
    _report(
        log_json,
        f"streamem stream: stopped ({result.stopped}) after {result.batches} batches; {result.rows} rows in the "
        f"model, {result.rejected} malformed records sent to the dead letters, {result.checkpoints} checkpoints, "
        f"{len(result.drifts)} drift alarms",
        {
            "event": "done",
            "stopped": result.stopped,
            "batches": result.batches,
            "rows": result.rows,
            "rejected": result.rejected,
            "checkpoints": result.checkpoints,
            "position": result.position,
            "drift_alarms": len(result.drifts),
            "drift_alarms_total": result.detector.alarms,
        },
    )
