"""The ``streamem`` command line (the edge: nothing in the core imports it)."""

from __future__ import annotations

import logging
import sys
import time

import click
import numpy as np

__all__ = ["main"]


def _show_log(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("streamem")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamem")
def main() -> None:
    """Gaussian mixtures fitted by EM on data larger than memory, on Dask."""


@main.command()
@click.option("--n-samples", default=200_000, show_default=True, type=click.IntRange(min=1))
@click.option("--n-features", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--n-components", default=5, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--covariance-type", default="full", show_default=True, type=click.Choice(["full", "tied", "diag", "spherical"])
)
@click.option(
    "--chunk-size", default=25_000, show_default=True, type=click.IntRange(min=1), help="Rows per dask chunk."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--quiet", is_flag=True, help="Only the final summary.")
def demo(n_samples, n_features, n_components, covariance_type, chunk_size, seed, quiet) -> None:
    """Fit a mixture to generated data on the local scheduler (no server, no download)."""
    import dask.array as da

    from .batch import GaussianMixture

    _show_log(quiet)
    rng = np.random.default_rng(seed)
    true_means = rng.uniform(-10, 10, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    X = true_means[labels] + rng.normal(size=(n_samples, n_features))
    data = da.from_array(X, chunks=(chunk_size, n_features))
    click.echo(f"data: {n_samples} x {n_features} in {data.numblocks[0]} chunks, {n_components} true components")
    start = time.perf_counter()
    gm = GaussianMixture(
        n_components, covariance_type=covariance_type, random_state=seed, verbose=2, verbose_interval=1
    ).fit(data)
    seconds = time.perf_counter() - start
    nearest = np.abs(gm.means_[:, None, :] - true_means[None]).max(axis=2).min(axis=1)
    click.echo(
        f"streamem: {gm.n_iter_} iterations in {seconds:.2f} s, converged={gm.converged_}, "
        f"mean log-likelihood {gm.lower_bound_:.6f}"
    )
    click.echo(f"largest distance from a fitted mean to its true mean: {nearest.max():.3f}")
