"""Pre-emption: a fit killed with SIGKILL and started again ends as if never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import streamem

from .helpers import latest_iteration

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def fit_command(data, checkpoint, out):
    return [
        sys.executable,
        "-m",
        "streamem",
        "fit",
        str(data),
        "--n-components",
        "6",
        "--init",
        "random",
        "--max-iter",
        "40",
        "--tol",
        "0",
        "--seed",
        "3",
        "--quiet",
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
    ]


@pytest.mark.long
@pytest.mark.slow
def test_sigkill_and_resume_equals_an_uninterrupted_fit(tmp_path):
    data = tmp_path / "points.zarr"
    streamem.make_data(data, 200_000, 6, 6, chunk_size=25_000, seed=2)
    checkpoint, out = tmp_path / "checkpoint", tmp_path / "model.zarr"
    process = subprocess.Popen(fit_command(data, checkpoint, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while latest_iteration(checkpoint) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed_at = latest_iteration(checkpoint)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert 3 <= killed_at < 40 and not out.exists()

    resumed = subprocess.run(fit_command(data, checkpoint, out), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    model = streamem.load(out)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = streamem.GaussianMixture(6, init_params="random", max_iter=40, tol=0, random_state=3).fit(str(data))
    assert model.n_iter_ == reference.n_iter_ == 40
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(model, name), getattr(reference, name), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.lower_bounds_, reference.lower_bounds_, rtol=1e-12)


def test_checkpoint_of_another_fit_is_refused(tmp_path, blobs):
    X, _ = blobs
    streamem.GaussianMixture(3, max_iter=3, random_state=0, checkpoint=tmp_path / "ck").fit(X)
    with pytest.raises(ValueError, match="another fit"):
        streamem.GaussianMixture(4, max_iter=3, random_state=0, checkpoint=tmp_path / "ck").fit(X)
    with pytest.raises(ValueError, match="another fit"):
        streamem.GaussianMixture(3, max_iter=3, random_state=0, checkpoint=tmp_path / "ck").fit(X[:-1])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a streamem checkpoint"):
        streamem.GaussianMixture(3, checkpoint=tmp_path / "other").fit(X)


@pytest.mark.slow
def test_resume_after_an_early_stop_continues_exactly(tmp_path, blobs):
    X, _ = blobs
    common = dict(init_params="random", tol=0, random_state=0, n_init=2)
    reference = streamem.GaussianMixture(3, max_iter=15, **common).fit(X)
    streamem.GaussianMixture(3, max_iter=6, checkpoint=tmp_path / "ck", **common).fit(X)
    resumed = streamem.GaussianMixture(3, max_iter=15, checkpoint=tmp_path / "ck", **common).fit(X)
    np.testing.assert_array_equal(resumed.means_, reference.means_)
    assert resumed.lower_bounds_ == reference.lower_bounds_
    assert [h["iteration"] for h in resumed.history_] == list(range(1, 16))


def test_a_state_written_before_the_first_pointer_is_not_a_foreign_directory(tmp_path):
    from streamem.data.checkpoint import load_state
    from streamem.data.store import write_group

    write_group(tmp_path / "ck" / "state-000000-deadbeef.zarr", {"shift": np.zeros(2)}, {"format": "partial"})
    assert load_state(tmp_path / "ck") is None  # stopped before LATEST: start afresh
    (tmp_path / "ck" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a streamem checkpoint"):
        load_state(tmp_path / "ck")
