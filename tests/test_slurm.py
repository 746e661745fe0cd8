"""The Slurm recipe submitted for real: ``sbatch deploy/slurm/streamem-fit.sbatch`` on a
single-node Slurm cluster (munged, slurmctld and slurmd of the system's packages, started
here on free loopback ports as the user running the tests), its workers started as Slurm
jobs by dask-jobqueue. Left out by default; ``python -m pytest -m slurm`` (``.ci/run``
installs the packages first)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import streamem

from .helpers import free_port, latest_iteration

#: Slurm's daemons are servers, and its worker jobs a dask cluster: the fast target leaves them out too
pytestmark = [pytest.mark.slurm, pytest.mark.server, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "deploy" / "slurm" / "streamem-fit.sbatch"
#: the fit the recipe runs (fit_on_slurm.py's defaults but for these), and the worker jobs' size
FIT = dict(n_components=5, max_iter=40, random_state=0)  # 21 iterations on the data below: time to interrupt it
WORKER_JOBS = ["--cores", "1", "--processes", "1", "--memory", "1GB", "--interface", "lo"]
DAEMONS = ("munged", "slurmctld", "slurmd")


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install slurmctld slurmd slurm-client munge)", pytrace=False)
    return path


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _wait(condition, seconds: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            pytest.fail(f"{what} within {seconds} s\n{tail}", pytrace=False)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm cluster until the module's tests end; yields the environment its
    commands need (``SLURM_CONF``)."""
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        pytest.fail("dask-jobqueue is not installed (pip install -e '.[test]' brings it)", pytrace=False)
    binaries = {name: _binary(name) for name in (*DAEMONS, "sbatch", "squeue", "scontrol", "scancel")}
    home = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool"):
        (home / sub).mkdir(mode=0o700)
    key = home / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    socket_path = home / "munge" / "munge.sock"
    host = socket.gethostname()
    conf = home / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=streamem-tests",
                f"SlurmctldHost={host}(127.0.0.1)",
                f"SlurmUser={_user()}",
                f"SlurmdUser={_user()}",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={socket_path}",
                f"StateSaveLocation={home / 'state'}",
                f"SlurmdSpoolDir={home / 'spool'}",
                f"SlurmctldPidFile={home / 'slurmctld.pid'}",
                f"SlurmdPidFile={home / 'slurmd.pid'}",
                f"SlurmctldLogFile={home / 'slurmctld.log'}",
                f"SlurmdLogFile={home / 'slurmd.log'}",
                # an unprivileged container: no cgroups, processes tracked by their parents
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "MpiDefault=none",
                "ReturnToService=2",
                "SchedulerType=sched/backfill",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU",
                "JobCompType=jobcomp/none",
                "AccountingStorageType=accounting_storage/none",
                # the node offers more CPUs than it has, so that a driver and its worker jobs
                # run side by side on a 2-core machine
                "SlurmdParameters=config_overrides",
                f"NodeName={host} NodeAddr=127.0.0.1 CPUs=16 RealMemory=64000 State=UNKNOWN",
                "PartitionName=tests Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            ]
        )
        + "\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "TMPDIR"}  # as sites often leave it
    env["SLURM_CONF"] = str(conf)
    log = open(home / "daemons.log", "w")  # noqa: SIM115
    started = []
    try:
        munge = [
            binaries["munged"],
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={socket_path}",
            f"--pid-file={home / 'munge' / 'munged.pid'}",
            f"--log-file={home / 'munge' / 'munged.log'}",
            f"--seed-file={home / 'munge' / 'munged.seed'}",
        ]
        started.append(subprocess.Popen(munge, stdout=log, stderr=log, env=env))
        _wait(socket_path.exists, 15, "munged did not start", home / "daemons.log")
        started.append(subprocess.Popen([binaries["slurmctld"], "-D", "-i"], stdout=log, stderr=log, env=env))
        started.append(subprocess.Popen([binaries["slurmd"], "-D"], stdout=log, stderr=log, env=env))

        def idle():
            out = subprocess.run([binaries["scontrol"], "show", "node", host], capture_output=True, text=True, env=env)
            return "State=IDLE" in out.stdout

        _wait(idle, 30, "the Slurm node did not come up", home / "slurmctld.log")
        yield env
    finally:
        subprocess.run([binaries["scancel"], "--full", "--user", _user()], env=env, capture_output=True)
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
        for process in reversed(started):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _submit(env, tmp_path, data, *extra) -> str:
    """``sbatch`` the driver recipe from the repository's root; its job id."""
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--chdir={ROOT}",
            f"--output={tmp_path / 'driver-%j.log'}",
            str(SBATCH),
            str(data),
            str(FIT["n_components"]),
            str(tmp_path / "model.zarr"),
            "2",
            "--max-iter",
            str(FIT["max_iter"]),
            *WORKER_JOBS,
            "--log-directory",
            str(tmp_path),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return out.stdout.strip().split(";")[0]


def _job(env, job_id: str) -> dict:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, env=env)
    return dict(re.findall(r"(\w+)=(\S*)", out.stdout))


def _finished(env, job_id: str, tmp_path, seconds: float = 150) -> Path:
    log = tmp_path / f"driver-{job_id}.log"
    _wait(
        lambda: _job(env, job_id).get("JobState") in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"},
        seconds,
        f"driver job {job_id} did not finish",
        log,
    )
    assert _job(env, job_id)["JobState"] == "COMPLETED", log.read_text()[-3000:]
    return log


def _local_fit(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return streamem.GaussianMixture(**FIT).fit(str(data))


def _assert_same(model, reference):
    assert model.n_iter_ == reference.n_iter_
    for name in ("weights_", "means_", "covariances_", "lower_bound_"):
        np.testing.assert_array_equal(getattr(model, name), getattr(reference, name), err_msg=name)


def _worker_jobs(log: Path) -> list[str]:
    _wait(lambda: log.exists() and "worker jobs:" in log.read_text(), 90, "no worker job started", log)
    return log.read_text().split("worker jobs:")[1].split("\n")[0].split()


@pytest.fixture
def data(tmp_path):
    return streamem.make_data(tmp_path / "points.zarr", 40_000, 4, 3, chunk_size=5_000, seed=7)


def test_the_recipe_fits_on_worker_jobs_as_a_local_fit_does(slurm, tmp_path, data):
    job_id = _submit(slurm, tmp_path, data)
    log = _finished(slurm, job_id, tmp_path)
    workers = _worker_jobs(log)
    assert workers and job_id not in workers
    for worker in workers:  # dask-jobqueue's jobs, run by this Slurm
        assert _job(slurm, worker)["JobName"] == "streamem-worker"
    _assert_same(streamem.load(tmp_path / "model.zarr"), _local_fit(data))


def test_a_cancelled_worker_job_leaves_the_result_unchanged(slurm, tmp_path, data):
    job_id = _submit(slurm, tmp_path, data)
    log = tmp_path / f"driver-{job_id}.log"
    checkpoint = tmp_path / "model.checkpoint"
    workers = _worker_jobs(log)
    _wait(lambda: (checkpoint / "LATEST").exists(), 90, "the fit did not checkpoint", log)
    subprocess.run(["scancel", workers[0]], env=slurm, check=True)
    cancelled_at = latest_iteration(checkpoint)  # the fit had not ended when the worker went
    assert _job(slurm, job_id)["JobState"] == "RUNNING" and not (tmp_path / "model.zarr").exists()
    _finished(slurm, job_id, tmp_path)
    assert _job(slurm, workers[0])["JobState"] == "CANCELLED"
    model = streamem.load(tmp_path / "model.zarr")
    assert cancelled_at < model.n_iter_
    _assert_same(model, _local_fit(data))


def test_a_requeued_driver_resumes_from_its_checkpoint(slurm, tmp_path, data):
    job_id = _submit(slurm, tmp_path, data)
    log = tmp_path / f"driver-{job_id}.log"
    checkpoint = tmp_path / "model.checkpoint"
    _wait(lambda: (checkpoint / "LATEST").exists(), 120, "the fit did not checkpoint", log)
    requeued_at = latest_iteration(checkpoint)
    subprocess.run(["scontrol", "requeue", job_id], env=slurm, check=True)
    requeued = time.monotonic()

    def resumed():
        # Slurm holds a requeued batch job for two minutes (its BeginTime): start it sooner, as
        # an administrator may, once it is pending again and a few seconds after the requeue
        # (slurmd refuses a job credential made in the second its previous run's was revoked)
        if time.monotonic() - requeued > 3 and _job(slurm, job_id).get("JobState") == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=slurm, capture_output=True)
        return "resuming from the checkpoint" in log.read_text()

    _wait(resumed, 150, "the requeued driver did not resume", log)
    _finished(slurm, job_id, tmp_path)
    model = streamem.load(tmp_path / "model.zarr")
    assert requeued_at < model.n_iter_
    _assert_same(model, _local_fit(data))
