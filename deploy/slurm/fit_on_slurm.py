"""Fit a streamem model on workers started as Slurm jobs (dask-jobqueue's SLURMCluster).

    python deploy/slurm/fit_on_slurm.py DATA --n-components K --out MODEL \\
        [--jobs 4] [--cores 8] [--processes 8] [--memory 32GB] [--walltime 02:00:00]
        [--interface ib0] [--log-directory DIR] [--checkpoint DIR]

DATA is a zarr array on a shared filesystem (or an fsspec URL): workers read their chunks
from it. With --checkpoint on a shared filesystem, a requeued job resumes the fit where
the killed one stopped. Cluster settings come from deploy/slurm/jobqueue.yaml and these
flags. Needs `pip install "streamem[slurm]"` on the submitting node.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--n-components", type=int, required=True)
    parser.add_argument("--covariance-type", default="full", choices=["full", "tied", "diag", "spherical"])
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--n-init", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--jobs", type=int, default=4, help="Slurm jobs of workers")
    parser.add_argument("--cores", type=int, default=None, help="cores per job (default: jobqueue.yaml)")
    parser.add_argument("--memory", default=None, help="memory per job, e.g. 32GB (default: jobqueue.yaml)")
    parser.add_argument("--walltime", default=None, help="per job, e.g. 02:00:00 (default: jobqueue.yaml)")
    parser.add_argument("--processes", type=int, default=None, help="worker processes per job (default: jobqueue.yaml)")
    parser.add_argument("--interface", default=None, help="network interface of the scheduler and workers, e.g. ib0")
    parser.add_argument("--log-directory", default=None, help="where the worker jobs' logs go (default: here)")
    return parser.parse_args(argv)


def cluster_options(args) -> dict:
    options = dict(yaml.safe_load((HERE / "jobqueue.yaml").read_text())["jobqueue"]["slurm"])
    options = {key.replace("-", "_"): value for key, value in options.items() if value is not None}
    for key in ("cores", "memory", "walltime", "processes", "interface", "log_directory"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    options["processes"] = min(options.get("processes", 1), options["cores"])  # a thread per process at least
    return options


def main(argv=None):
    args = parse_args(argv)
    # the fit's progress (and a requeued job's "resuming from the checkpoint") in the job's log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    import streamem

    with SLURMCluster(**cluster_options(args)) as cluster, Client(cluster) as client:
        cluster.scale(jobs=args.jobs)
        print(f"dashboard: {client.dashboard_link}", flush=True)
        client.wait_for_workers(1)
        print(
            "worker jobs:", " ".join(sorted({job.job_id for job in cluster.workers.values() if job.job_id})), flush=True
        )
        gm = streamem.GaussianMixture(
            args.n_components,
            covariance_type=args.covariance_type,
            max_iter=args.max_iter,
            n_init=args.n_init,
            random_state=args.seed,
            checkpoint=args.checkpoint,
            verbose=2,
            verbose_interval=1,
        )
        gm.fit(args.data)
        gm.save(args.out)
        print(f"{gm.n_iter_} iterations, converged={gm.converged_}, saved {args.out}")


if __name__ == "__main__":
    main()
