"""The deploy/ recipes: the local one is run for real, the others are checked."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

import streamem
from streamem.engine.cluster import WORKER_ENVIRON

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_options() -> set[str]:
    help_text = subprocess.run(
        [sys.executable, "-m", "streamem", "fit", "--help"], capture_output=True, text=True
    ).stdout
    return set(re.findall(r"--[a-z][a-z-]+", help_text))


@pytest.mark.long
@pytest.mark.cluster
def test_local_recipe_runs_a_fit(tmp_path):
    port = free_port()
    state = tmp_path / "state"
    environ = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    started = subprocess.run(
        ["bash", str(DEPLOY / "local" / "start-cluster.sh"), "2", str(port), str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )
    try:
        assert started.returncode == 0, started.stderr
        address = started.stdout.strip().splitlines()[-1]
        assert address == f"tcp://127.0.0.1:{port}"
        streamem.make_data(tmp_path / "points.zarr", 40_000, 3, 3, chunk_size=8000, seed=0)
        fit = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamem",
                "fit",
                str(tmp_path / "points.zarr"),
                "--n-components",
                "3",
                "--seed",
                "0",
                "--scheduler",
                address,
                "--out",
                str(tmp_path / "model.zarr"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert fit.returncode == 0, fit.stderr
        assert "dashboard" in fit.stderr
        from distributed import Client

        with Client(address, timeout="30s") as client:
            seen = client.run(lambda: {name: os.environ.get(name) for name in WORKER_ENVIRON})
        assert list(seen.values()) == [WORKER_ENVIRON] * 2
        log = (state / "scheduler.log").read_text()
        assert f"tcp://127.0.0.1:{port}" in log and "0.0.0.0" not in log
    finally:
        subprocess.run(["bash", str(DEPLOY / "local" / "stop-cluster.sh"), str(state)], timeout=60)
    here = streamem.GaussianMixture(3, random_state=0).fit(str(tmp_path / "points.zarr"))
    np.testing.assert_allclose(streamem.load(tmp_path / "model.zarr").means_, here.means_, rtol=1e-10)
    with socket.socket() as s:  # the scheduler is gone
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_slurm_recipe():
    config = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    assert {"cores", "processes", "memory", "walltime"} <= set(config)
    exported = [shlex.split(line) for line in config["job-script-prologue"]]
    assert dict(item.split("=") for line in exported if line[0] == "export" for item in line[1:]) == WORKER_ENVIRON
    script = DEPLOY / "slurm" / "fit_on_slurm.py"
    help_text = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=True
    ).stdout
    options = set(re.findall(r"--[a-z][a-z-]+", help_text))
    sbatch = (DEPLOY / "slurm" / "streamem-fit.sbatch").read_text()
    call = sbatch[sbatch.index("python deploy/slurm/fit_on_slurm.py") :]
    assert set(re.findall(r"--[a-z][a-z-]+", call)) <= options
    assert "#SBATCH --requeue" in sbatch and "--checkpoint" in call
    sys.path.insert(0, str(script.parent))
    try:
        import fit_on_slurm

        args = fit_on_slurm.parse_args(["data.zarr", "--n-components", "4", "--out", "m.zarr", "--memory", "8GB"])
        options = fit_on_slurm.cluster_options(args)
        assert options["memory"] == "8GB" and options["cores"] == config["cores"]
        assert "job_extra_directives" in options and "queue" not in options
    finally:
        sys.path.remove(str(script.parent))


def test_kubernetes_recipe_and_image():
    cluster = yaml.safe_load((DEPLOY / "kubernetes" / "dask-cluster.yaml").read_text())
    job = yaml.safe_load((DEPLOY / "kubernetes" / "fit-job.yaml").read_text())
    assert cluster["kind"] == "DaskCluster" and cluster["apiVersion"].startswith("kubernetes.dask.org/")
    assert job["kind"] == "Job"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "fit"
    assert {a for a in args if a.startswith("--")} <= fit_options()
    scheduler = args[args.index("--scheduler") + 1]
    assert scheduler == f"tcp://{cluster['metadata']['name']}-scheduler:8786"
    (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
    assert WORKER_ENVIRON.items() <= {item["name"]: item["value"] for item in worker["env"]}.items()
    images = {c["image"] for c in cluster["spec"]["worker"]["spec"]["containers"]}
    images |= {c["image"] for c in cluster["spec"]["scheduler"]["spec"]["containers"]} | {container["image"]}
    assert images == {"streamem:latest"}
    s3_job = yaml.safe_load((DEPLOY / "kubernetes" / "fit-s3-job.yaml").read_text())
    (s3_container,) = s3_job["spec"]["template"]["spec"]["containers"]
    s3_args = s3_container["args"]
    assert s3_args[0] == "fit" and {a for a in s3_args if a.startswith("--")} <= fit_options()
    assert all(s3_args[s3_args.index(o) + 1].startswith("s3://") for o in ("--checkpoint", "--out"))
    assert s3_args[1].startswith("s3://") and s3_container["image"] == "streamem:latest"
    secret = s3_container["envFrom"][0]["secretRef"]["name"]
    assert {"secretRef": {"name": secret, "optional": True}} in worker["envFrom"]  # the workers read the chunks
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert re.search(r'pip install "\.\[[^"]*\bs3\b', dockerfile)  # s3fs in the image
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))
    assert entrypoint == ["streamem"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["streamem"] == "streamem.cli:main"
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (ROOT / source).exists(), source
