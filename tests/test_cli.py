"""The command line on real files: in-process through click's test runner
(:func:`~tests.helpers.cli`), and as a user runs it, in a subprocess, where only a new process
shows what is tested (the entry point, a terminal, worker processes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import zarr

import streamem

from .helpers import cli, cli_process


def ok(*args, **kwargs):
    result = cli(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result


def fails(code, *args, **kwargs):
    result = cli(*args, **kwargs)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A data set made with make-data and a model fitted to it by the CLI."""
    d = tmp_path_factory.mktemp("cli")
    ok(
        "make-data",
        d / "points.zarr",
        "--n-samples",
        30000,
        "--n-features",
        3,
        "--n-components",
        3,
        "--chunk-size",
        7000,
        "--seed",
        1,
    )
    ok("fit", d / "points.zarr", "--n-components", 3, "--seed", 0, "--out", d / "model.zarr")
    return d


def no_leftovers(directory):
    return not [p.name for p in directory.iterdir() if p.name.startswith(".")]


@pytest.mark.long
@pytest.mark.slow
def test_the_command_runs_as_a_process_as_it_does_in_process(workdir, tmp_path):
    """The entry point a user runs, in a new process: a fit equal to the in-process one, an
    error in one line with exit code 1, a usage error with exit code 2."""
    assert "make-data" in cli_process("--help").stdout
    fitted = cli_process("fit", workdir / "points.zarr", "--n-components", 3, "--seed", 0, "--out", tmp_path / "m.zarr")
    assert fitted.returncode == 0, fitted.stderr
    np.testing.assert_array_equal(
        streamem.load(tmp_path / "m.zarr").means_, streamem.load(workdir / "model.zarr").means_
    )
    missing = cli_process("fit", tmp_path / "absent.npy", "--n-components", 2, "--out", tmp_path / "n.zarr")
    assert missing.returncode == 1 and missing.stderr.startswith("error:") and len(missing.stderr.splitlines()) == 1
    assert not (tmp_path / "n.zarr").exists()
    assert cli_process("nonsense").returncode == 2


def test_every_command_has_help():
    for command in ("make-data", "fit", "predict", "score", "info", "plot", "demo"):
        result = ok(command, "--help")
        assert "Usage:" in result.stdout and "--help" in result.stdout
    assert "make-data" in ok("--help").stdout


def test_make_data_writes_chunks_and_labels(workdir):
    group = zarr.open_group(str(workdir / "points.zarr"), mode="r")
    assert group["X"].shape == (30000, 3) and group["X"].chunks == (7000, 3)
    assert group["labels"].shape == (30000,)
    assert set(np.unique(group["labels"][:])) == {0, 1, 2}
    assert len(group.attrs["means"]) == 3


def test_fit_recovers_the_generating_means(workdir):
    gm = streamem.load(workdir / "model.zarr")
    true_means = np.array(zarr.open_group(str(workdir / "points.zarr"), mode="r").attrs["means"])
    error = np.abs(gm.means_[:, None] - true_means[None]).sum(axis=2).min(axis=0)
    assert np.all(error < 0.1)
    assert no_leftovers(workdir)


def _two_clusters_as_files(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-4, 1, (500, 2)), rng.normal(4, 1, (500, 2))])
    np.save(tmp_path / "x.npy", X)
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "name": ["p"] * len(X)})


def _fitted_means(tmp_path, data, *extra):
    ok("fit", tmp_path / data, "--n-components", 2, "--seed", 0, "--out", tmp_path / f"{data}.zarr", *extra)
    return np.sort(streamem.load(tmp_path / f"{data}.zarr").means_, axis=0)


def test_fit_reads_npy_and_csv(tmp_path):
    _two_clusters_as_files(tmp_path).to_csv(tmp_path / "x.csv", index=False)
    np.testing.assert_allclose(
        _fitted_means(tmp_path, "x.csv", "--columns", "a,b"), _fitted_means(tmp_path, "x.npy"), rtol=1e-10
    )
    result = fails(1, "fit", tmp_path / "x.csv", "--n-components", 2, "--out", tmp_path / "m.zarr")
    assert "non-numeric ['name']" in result.stderr and "--columns" in result.stderr
    fails(1, "fit", tmp_path / "x.csv", "--n-components", 2, "--columns", "a,zz", "--out", tmp_path / "m.zarr")


def test_fit_reads_parquet(tmp_path):
    _two_clusters_as_files(tmp_path).to_parquet(tmp_path / "x.parquet")
    np.testing.assert_allclose(
        _fitted_means(tmp_path, "x.parquet", "--columns", "a, b"), _fitted_means(tmp_path, "x.npy"), rtol=1e-10
    )


def test_predict_writes_labels_and_responsibilities(workdir, tmp_path):
    gm = streamem.load(workdir / "model.zarr")
    X = zarr.open_group(str(workdir / "points.zarr"), mode="r")["X"][:]
    ok("predict", workdir / "model.zarr", workdir / "points.zarr", "--out", tmp_path / "labels.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), gm.predict(X))
    ok("predict", workdir / "model.zarr", workdir / "points.zarr", "--out", tmp_path / "labels.zarr")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "labels.zarr"), mode="r")[:], gm.predict(X))
    ok("predict", workdir / "model.zarr", workdir / "points.zarr", "--out", tmp_path / "proba.zarr", "--proba")
    proba = zarr.open_array(str(tmp_path / "proba.zarr"), mode="r")[:]
    np.testing.assert_allclose(proba, gm.predict_proba(X), rtol=1e-12)
    assert no_leftovers(tmp_path)


def test_score_matches_the_python_api(workdir):
    gm = streamem.load(workdir / "model.zarr")
    X = zarr.open_group(str(workdir / "points.zarr"), mode="r")["X"][:]
    lines = dict(
        line.split(": ")
        for line in ok("score", workdir / "model.zarr", workdir / "points.zarr").stdout.split("\n")
        if line
    )
    assert float(lines["mean log-likelihood"]) == pytest.approx(gm.score(X), abs=1e-6)
    assert float(lines["BIC"]) == pytest.approx(gm.bic(X), abs=1e-4)
    assert float(lines["AIC"]) == pytest.approx(gm.aic(X), abs=1e-4)
    record = json.loads(ok("score", workdir / "model.zarr", workdir / "points.zarr", "--log-json").stdout)
    assert record["bic"] == pytest.approx(gm.bic(X), rel=1e-10)


def test_info_is_readable_and_json(workdir):
    text = ok("info", workdir / "model.zarr").stdout
    assert "3 components, 3 features, full covariances" in text
    summary = json.loads(ok("info", workdir / "model.zarr", "--json").stdout)
    assert summary["n_components"] == 3 and len(summary["weights"]) == 3


def test_plot_renders_png(workdir, tmp_path):
    ok("plot", workdir / "model.zarr", workdir / "points.zarr", "--out", tmp_path / "model.png")
    ok("plot", workdir / "model.zarr", "--out", tmp_path / "curves.png", "--projection", "first")
    for name in ("model.png", "curves.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_fit_chooses_k_and_plot_shows_bic(workdir, tmp_path):
    result = ok("fit", workdir / "points.zarr", "--n-components", "1:5", "--seed", 0, "--out", tmp_path / "m.zarr")
    assert "fitted K=3" in result.stdout and " 3 " in result.stdout and "<" in result.stdout
    gm = streamem.load(tmp_path / "m.zarr")
    assert gm.n_components == 3 and [row["n_components"] for row in gm.selection_] == [1, 2, 3, 4, 5]
    ok("plot", tmp_path / "m.zarr", workdir / "points.zarr", "--out", tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads(
        ok(
            "fit",
            workdir / "points.zarr",
            "--n-components",
            "2,3",
            "--criterion",
            "aic",
            "--seed",
            0,
            "--quiet",
            "--log-json",
            "--out",
            tmp_path / "n.zarr",
        ).stdout.splitlines()[-1]
    )
    assert record["n_components"] == 3 and len(record["selection"]) == 2
    fails(2, "fit", workdir / "points.zarr", "--n-components", "3:x", "--out", tmp_path / "o.zarr")
    fails(2, "fit", workdir / "points.zarr", "--n-components", "0:3", "--out", tmp_path / "o.zarr")


def test_progress_lines_quiet_and_json(workdir, tmp_path):
    loud = ok(
        "fit",
        workdir / "points.zarr",
        "--n-components",
        2,
        "--init",
        "random",
        "--max-iter",
        3,
        "--tol",
        0,
        "--seed",
        0,
        "--out",
        tmp_path / "a.zarr",
    )
    assert re.search(r"iteration 1 \(pass \d+\): log-likelihood", loud.stderr) and "change" in loud.stderr
    quiet = ok(
        "fit",
        workdir / "points.zarr",
        "--n-components",
        2,
        "--max-iter",
        3,
        "--seed",
        0,
        "--quiet",
        "--out",
        tmp_path / "b.zarr",
    )
    assert "iteration" not in quiet.stderr
    lines = ok(
        "fit",
        workdir / "points.zarr",
        "--n-components",
        2,
        "--init",
        "random",
        "--max-iter",
        3,
        "--tol",
        0,
        "--seed",
        0,
        "--n-starts",
        1,
        "--log-json",
        "--out",
        tmp_path / "c.zarr",
    ).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    iterations = [r for r in records if r["event"] == "iteration"]
    assert [r["iteration"] for r in iterations] == [1, 2, 3]
    assert {"log_likelihood", "change", "seconds", "chunks", "passes", "step", "accepted"} <= set(iterations[0])
    assert records[-1]["event"] == "done" and records[-1]["n_iter"] == 3
    assert records[-1]["n_passes"] == iterations[-1]["passes"]


@pytest.mark.long
@pytest.mark.cluster
def test_fit_on_local_worker_processes(workdir, tmp_path):
    result = ok(
        "fit", workdir / "points.zarr", "--n-components", 3, "--seed", 0, "--workers", 2, "--out", tmp_path / "m.zarr"
    )
    assert "dashboard" in result.stderr
    here = streamem.load(workdir / "model.zarr")
    there = streamem.load(tmp_path / "m.zarr")
    np.testing.assert_array_equal(there.means_, here.means_)  # the same chunks: the same bits


def run_on_terminal(*args, env=None, timeout=300):
    """Run the CLI with its stderr on a pseudo-terminal; return the exit code and what it drew."""
    main, secondary = os.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "streamem", *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=timeout,
            env=env,
        )
    finally:
        os.close(secondary)
    drawn = b""
    while True:
        try:
            data = os.read(main, 1 << 16)
        except OSError:  # the terminal's other end is closed
            break
        if not data:
            break
        drawn += data
    os.close(main)
    return result.returncode, drawn.decode()


@pytest.mark.long
@pytest.mark.cluster
@pytest.mark.parametrize("workers", [None, 2], ids=["threads", "two-worker-processes"])
def test_fit_draws_a_bar_over_the_chunks_of_each_pass_on_a_terminal(workdir, tmp_path, workers):
    env = dict(os.environ, DASK_STREAMEM__PROGRESS_DELAY="0")  # draw from the first chunk of every pass
    extra = ["--workers", workers] if workers else []
    code, drawn = run_on_terminal(
        "fit",
        workdir / "points.zarr",
        "--n-components",
        3,
        "--init",
        "random",
        "--max-iter",
        2,
        "--tol",
        0,
        "--seed",
        0,
        "--out",
        tmp_path / "m.zarr",
        *extra,
        env=env,
    )
    assert code == 0, drawn
    n_chunks = 5  # 30,000 rows in chunks of 7,000
    assert drawn.count(f"{n_chunks}/{n_chunks}") >= 3, drawn  # the initial pass and two iterations
    assert f"1/{n_chunks}" in drawn and re.search(r"iteration 2 \(pass \d+\): log-likelihood", drawn)
    code, drawn = run_on_terminal(
        "fit",
        workdir / "points.zarr",
        "--n-components",
        3,
        "--max-iter",
        2,
        "--seed",
        0,
        "--quiet",
        "--out",
        tmp_path / "q.zarr",
        *extra,
        env=env,
    )
    assert code == 0 and f"/{n_chunks}" not in drawn and "iteration" not in drawn, drawn


def test_warnings_are_one_line(workdir, tmp_path):
    result = ok(
        "fit",
        workdir / "points.zarr",
        "--n-components",
        3,
        "--max-iter",
        1,
        "--tol",
        0,
        "--seed",
        0,
        "--out",
        tmp_path / "m.zarr",
    )
    assert "warning: Best performing initialization did not converge" in result.stderr
    assert "cli.py" not in result.stderr and "ConvergenceWarning" not in result.stderr
    lines = ok(
        "fit",
        workdir / "points.zarr",
        "--n-components",
        3,
        "--max-iter",
        1,
        "--tol",
        0,
        "--seed",
        0,
        "--log-json",
        "--out",
        tmp_path / "n.zarr",
    ).stdout.splitlines()
    assert {"event": "warning", "category": "ConvergenceWarning"}.items() <= json.loads(lines[-2]).items()


def test_bad_inputs_exit_1_with_one_line(workdir, tmp_path):
    X = np.random.default_rng(0).normal(size=(100, 3))
    X[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", X)
    np.save(tmp_path / "wide.npy", np.ones((10, 5)))
    np.save(tmp_path / "flat.npy", np.ones(10))
    (tmp_path / "junk.npy").write_text("not numpy")
    cases = [
        (("fit", tmp_path / "missing.zarr", "--n-components", 2, "--out", tmp_path / "m.zarr"), "no such file"),
        (("fit", tmp_path / "nan.npy", "--n-components", 2, "--out", tmp_path / "m.zarr"), "NaN"),
        (("fit", tmp_path / "flat.npy", "--n-components", 2, "--out", tmp_path / "m.zarr"), "2-D"),
        (("fit", tmp_path / "junk.npy", "--n-components", 2, "--out", tmp_path / "m.zarr"), ".npy"),
        (
            ("fit", tmp_path / "wide.npy", "--n-components", 20, "--out", tmp_path / "m.zarr"),
            "n_samples >= n_components",
        ),
        (
            ("fit", tmp_path / "wide.npy", "--n-components", 2, "--out", tmp_path / "no" / "m.zarr"),
            "existing directory",
        ),
        (("predict", workdir / "model.zarr", tmp_path / "wide.npy", "--out", tmp_path / "l.npy"), "features"),
        (("predict", workdir / "model.zarr", tmp_path / "nan.npy", "--out", tmp_path / "l.npy"), "NaN"),
        (("predict", workdir / "model.zarr", workdir / "points.zarr", "--out", tmp_path / "l.txt"), ".npy or .zarr"),
        (
            ("predict", workdir / "points.zarr", workdir / "points.zarr", "--out", tmp_path / "l.npy"),
            "not a streamem model",
        ),
        (("score", tmp_path / "missing.zarr", workdir / "points.zarr"), "not a streamem model"),
        (("info", workdir / "points.zarr"), "not a streamem model"),
        (("plot", workdir / "model.zarr", tmp_path / "wide.npy", "--out", tmp_path / "p.png"), "features"),
    ]
    for args, message in cases:
        result = fails(1, *args)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, result.stderr)
    # nothing half-written: no outputs and no temporary files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.npy", "junk.npy", "nan.npy", "wide.npy"]
    debug = cli("fit", tmp_path / "nan.npy", "--n-components", 2, "--out", tmp_path / "m.zarr", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_usage_errors_exit_2(workdir, tmp_path):
    fails(2, "fit", workdir / "points.zarr", "--out", tmp_path / "m.zarr")  # no --n-components
    fails(2, "fit", workdir / "points.zarr", "--n-components", 0, "--out", tmp_path / "m.zarr")
    fails(2, "fit", workdir / "points.zarr", "--n-components", 2, "--covariance-type", "x", "--out", tmp_path / "m")
    fails(
        2,
        "fit",
        workdir / "points.zarr",
        "--n-components",
        2,
        "--workers",
        2,
        "--scheduler",
        "tcp://127.0.0.1:1",
        "--out",
        tmp_path / "m.zarr",
    )
    fails(2, "predict", workdir / "model.zarr")
    fails(2, "make-data", tmp_path / "d.zarr", "--n-samples", "many", "--n-features", 2, "--n-components", 2)
    fails(2, "nonsense")


def test_make_data_refuses_to_overwrite(workdir):
    result = fails(1, "make-data", workdir / "points.zarr", "--n-samples", 10, "--n-features", 2, "--n-components", 2)
    assert "already exists" in result.stderr


def test_demo_fits_generated_data():
    result = ok("demo", "--n-samples", 20000, "--n-components", 3, "--chunk-size", 3000)
    assert "iteration 1 (pass " in result.stderr
    assert "converged=True" in result.stdout
    distance = float(result.stdout.split("true mean:")[1].split()[0])
    assert distance < 0.1


def test_fit_compares_covariance_types_by_icl_and_plot_draws_them(workdir, tmp_path):
    result = ok(
        "fit",
        workdir / "points.zarr",
        "--n-components",
        "2:4",
        "--covariance-type",
        "full,diag",
        "--criterion",
        "icl",
        "--seed",
        0,
        "--out",
        tmp_path / "m.zarr",
    )
    assert "ICL" in result.stdout and " diag " in result.stdout and "<" in result.stdout
    gm = streamem.load(tmp_path / "m.zarr")
    assert [(row["covariance_type"], row["n_components"]) for row in gm.selection_] == [
        (t, k) for t in ("full", "diag") for k in (2, 3, 4)
    ]
    assert gm.selection_criterion_ == "icl"
    assert (gm.covariance_type, gm.n_components) == min(
        ((row["covariance_type"], row["n_components"]) for row in gm.selection_),
        key=lambda key: next(r["icl"] for r in gm.selection_ if (r["covariance_type"], r["n_components"]) == key),
    )
    ok("plot", tmp_path / "m.zarr", "--out", tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    fails(
        2,
        "fit",
        workdir / "points.zarr",
        "--n-components",
        "3",
        "--covariance-type",
        "full,round",
        "--out",
        tmp_path / "o.zarr",
    )
