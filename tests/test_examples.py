"""Every example runs, at a small size, as a user would run it: the script as ``__main__``
with its command-line arguments."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

#: each example runs a whole job (the process's own start is checked in test_cli.py)
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def run(monkeypatch, capsys):
    """Run an example script as ``python examples/SCRIPT ARGS...`` from ``cwd`` would, in this
    process (each new interpreter would spend seconds importing dask); returns its output."""

    def run(script, *args, cwd):
        from streamem.models.base import MixtureBase

        # what an example registers (a new mixture) is gone when the test ends
        monkeypatch.setattr(MixtureBase, "_estimators", dict(MixtureBase._estimators))
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script), *map(str, args)])
        capsys.readouterr()
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
        return capsys.readouterr().out

    return run


@pytest.mark.long
@pytest.mark.slow
def test_larger_than_memory(run, tmp_path):
    out = run("larger_than_memory.py", "--gigabytes", 0.01, "--n-components", 4, "--workdir", tmp_path, cwd=tmp_path)
    assert "converged=True" in out
    for name in ("points.zarr", "model.zarr", "labels.zarr", "model.png"):
        assert (tmp_path / name).exists(), name


@pytest.mark.long
@pytest.mark.slow
def test_choose_k_by_bic(run, tmp_path):
    out = run("choose_k_by_bic.py", "--n-samples", 4000, "--max-k", 6, "--out", tmp_path / "bic.png", cwd=tmp_path)
    assert "lowest BIC at K=5" in out
    assert (tmp_path / "bic.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.long
def test_real_data_versus_sklearn(run, tmp_path):
    out = run("real_data_versus_sklearn.py", "--n-init", 1, cwd=tmp_path)
    difference = float(out.split("relative difference of the means")[1].split(",")[0])
    assert difference < 1e-8
    assert "streamem" in out and "scikit-learn" in out


@pytest.mark.long
@pytest.mark.slow
def test_impute_missing_values(run, tmp_path):
    out = run("impute_missing_values.py", "--missing", 0.1, cwd=tmp_path)
    errors = out.split("imputation error (RMSE, standardised units): mixture ")[1]
    mixture, means = float(errors.split(",")[0]), float(errors.split("column means ")[1].split()[0])
    assert mixture < means


def test_ingest_redis_stream(run, tmp_path, redis_server):
    # the server of the test extra (the example starts a redis-server of the PATH without --redis)
    out = run(
        "ingest_redis_stream.py",
        "--redis",
        f"127.0.0.1:{redis_server}",
        "--records",
        1500,
        "--workdir",
        tmp_path,
        cwd=tmp_path,
    )
    assert "rows in the model: 30,000 of 30,000 sent; dead letters: 1" in out
    assert "live model:" in out
    error = float(out.split("to the model's: ")[1].split()[0])
    assert error < 0.5


@pytest.mark.long
@pytest.mark.slow
def test_automatic_k(run, tmp_path):
    out = run(
        "automatic_k.py",
        "--n-samples",
        20000,
        "--max-k",
        7,
        "--max-iter",
        150,
        "--workdir",
        tmp_path,
        "--out",
        tmp_path / "k.png",
        cwd=tmp_path,
    )
    assert "ICL's choice: K=6" in out and "true number of clusters: 6" in out
    effective = int(out.split("Dirichlet-process variational fit (K <= 7)")[1].split()[0])
    assert 6 <= effective <= 7
    assert (tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"


def test_adding_a_mixture(run, tmp_path):
    out = run("adding_a_mixture.py", "--n-samples", 5000, cwd=tmp_path)
    gaussian, equal = (line for line in out.splitlines() if "weights" in line)
    assert "EqualWeightsMixture: weights [0.5, 0.5]" in equal
    small = float(gaussian.split("weights [")[1].split(",")[1].split("]")[0])
    assert abs(small - 0.1) < 0.03  # the clusters are of 9:1 sizes: the Gaussian mixture finds them
