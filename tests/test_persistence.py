"""Models saved as zarr groups, and conversion to and from scikit-learn."""

import json
import warnings

import numpy as np
import pytest
import zarr
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import streamem

from .helpers import COVARIANCE_TYPES


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip(tmp_path, blobs, covariance_type):
    X, _ = blobs
    gm = streamem.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    path = tmp_path / "model.zarr"
    gm.save(path)
    loaded = streamem.load(path)
    assert loaded.get_params() == gm.get_params()
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(gm, name))
    assert loaded.history_ == gm.history_
    np.testing.assert_array_equal(loaded.means_history_, gm.means_history_)
    assert (loaded.converged_, loaded.n_iter_, loaded.lower_bound_, loaded.n_features_in_) == (
        gm.converged_,
        gm.n_iter_,
        gm.lower_bound_,
        gm.n_features_in_,
    )
    np.testing.assert_array_equal(loaded.predict_proba(X), gm.predict_proba(X))


def test_saved_group_holds_arrays_and_json(tmp_path, blobs):
    gm = streamem.GaussianMixture(3, random_state=0).fit(blobs[0])
    gm.save(tmp_path / "m.zarr")
    group = zarr.open_group(str(tmp_path / "m.zarr"), mode="r")
    params = ["covariances", "means", "precisions_cholesky", "weights"]
    history = [
        "history_accepted",
        "history_change",
        "history_iteration",
        "history_log_likelihood",
        "history_passes",
        "history_seconds",
        "history_step",
        "means_history",
    ]
    extra = set(group.array_keys()) - set(params + history)  # where EM was in an extrapolation cycle, if it was
    assert set(params + history) <= set(group.array_keys()) and all(k.startswith("cycle_") for k in extra)
    assert group.attrs["format"] == "streamem.GaussianMixture"
    assert group.attrs["format_version"] == 1
    json.dumps(dict(group.attrs), allow_nan=False)  # standard JSON only
    metadata = (tmp_path / "m.zarr" / "zarr.json").read_text()
    json.loads(metadata, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_save_replaces_an_existing_model(tmp_path, blobs):
    X, _ = blobs
    path = tmp_path / "m.zarr"
    streamem.GaussianMixture(2, random_state=0).fit(X).save(path)
    streamem.GaussianMixture(3, random_state=0).fit(X).save(path)
    assert streamem.load(path).n_components == 3
    assert [p.name for p in tmp_path.iterdir()] == ["m.zarr"]


def test_save_never_overwrites_other_data(tmp_path, blobs):
    data = tmp_path / "points.zarr"
    z = zarr.create_array(str(data), shape=(3, 2), dtype="f8")
    z[...] = 1.0
    gm = streamem.GaussianMixture(3, random_state=0).fit(blobs[0])
    with pytest.raises(ValueError, match="refusing to overwrite"):
        gm.save(data)
    np.testing.assert_array_equal(zarr.open_array(str(data), mode="r")[...], np.ones((3, 2)))


def test_failed_save_leaves_nothing(tmp_path, blobs):
    gm = streamem.GaussianMixture(3, random_state=0).fit(blobs[0])
    with pytest.raises(ValueError, match="existing directory"):
        gm.save(tmp_path / "missing" / "m.zarr")
    assert list(tmp_path.iterdir()) == []


def test_foreign_and_corrupt_stores(tmp_path, blobs):
    with pytest.raises(ValueError, match="not a streamem model"):
        streamem.load(tmp_path / "nothing.zarr")
    foreign = zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    foreign.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="not a streamem model"):
        streamem.load(tmp_path / "foreign.zarr")
    future = tmp_path / "future.zarr"
    streamem.GaussianMixture(3, random_state=0).fit(blobs[0]).save(future)
    zarr.open_group(str(future), mode="r+").attrs["format_version"] = 99
    with pytest.raises(ValueError, match="format version 99"):
        streamem.load(future)
    broken = tmp_path / "broken.zarr"
    streamem.GaussianMixture(3, random_state=0).fit(blobs[0]).save(broken)
    group = zarr.open_group(str(broken), mode="r+")
    del group["means"]
    with pytest.raises(ValueError, match="corrupt"):
        streamem.load(broken)
    wrong = tmp_path / "wrong.zarr"
    streamem.GaussianMixture(3, random_state=0).fit(blobs[0]).save(wrong)
    zarr.open_group(str(wrong), mode="r+").attrs["params"] = {"n_components": 3, "covariance_type": "diag"}
    with pytest.raises(ValueError, match="corrupt"):
        streamem.load(wrong)
    (tmp_path / "text.zarr").write_text("not a store")
    with pytest.raises(ValueError, match="not a streamem model"):
        streamem.load(tmp_path / "text.zarr")


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_to_and_from_sklearn(blobs, covariance_type):
    X, _ = blobs
    gm = streamem.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    sk = gm.to_sklearn()
    assert isinstance(sk, SkGaussianMixture)
    np.testing.assert_allclose(sk.score_samples(X), gm.score_samples(X), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(sk.predict(X), gm.predict(X))
    back = streamem.GaussianMixture.from_sklearn(sk)
    np.testing.assert_allclose(back.score_samples(X), gm.score_samples(X), rtol=1e-10, atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = SkGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    mine = streamem.GaussianMixture.from_sklearn(fitted)
    np.testing.assert_allclose(mine.score_samples(X), fitted.score_samples(X), rtol=1e-10, atol=1e-10)
    assert mine.bic(X) == pytest.approx(fitted.bic(X), rel=1e-10)


def test_atomic_path_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    from streamem.data.store import atomic_path

    target = tmp_path / "out.zarr"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("first")
    assert (target / "a").read_text() == "first"
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("second")
        raise RuntimeError("interrupted")
    assert (target / "a").read_text() == "first"  # the old one untouched
    with atomic_path(target) as tmp:  # a directory already there is replaced whole
        tmp.mkdir()
        (tmp / "b").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]  # no temporary left beside it


def test_models_saved_in_format_1_still_load():
    """Stores written by the release that introduced format 1 (committed under tests/data):
    each loads as the class that saved it and predicts as it did then."""
    from pathlib import Path

    data = Path(__file__).parent / "data"
    expected = json.loads((data / "saved-format-1.json").read_text())
    rows = np.array(expected["rows"])
    for name, cls in (("batch", streamem.GaussianMixture), ("online", streamem.OnlineGaussianMixture)):
        model = streamem.load(data / f"{name}-format-1.zarr")
        assert type(model) is cls
        np.testing.assert_array_equal(model.predict(rows), expected[name]["predict"])
        np.testing.assert_allclose(model.score_samples(rows), expected[name]["score_samples"], rtol=1e-12)
    batch = streamem.load(data / "batch-format-1.zarr")
    assert batch.n_iter_ == expected["batch"]["n_iter"] and batch.lower_bound_ == expected["batch"]["lower_bound"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_load_reads_a_checkpoint_directory(tmp_path):
    """streamem.load gives the model a checkpoint holds: a batch fit's best candidate at its
    last saved iteration, and a stream's online model."""
    from streamem.stream import run
    from streamem.stream.sources.memory import MemorySource

    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(-4, 1, (600, 3)), rng.normal(4, 1, (600, 3))])
    gm = streamem.GaussianMixture(2, n_init=2, max_iter=4, tol=0.0, random_state=0, checkpoint=tmp_path / "batch")
    gm.fit(X)
    from_checkpoint = streamem.load(tmp_path / "batch")
    assert type(from_checkpoint) is streamem.GaussianMixture
    assert (from_checkpoint.n_components, from_checkpoint.n_init, from_checkpoint.n_iter_) == (2, 2, 4)
    np.testing.assert_array_equal(from_checkpoint.means_, gm.means_)
    np.testing.assert_array_equal(from_checkpoint.predict(X), gm.predict(X))
    assert from_checkpoint.history_ == gm.history_

    online = streamem.OnlineGaussianMixture(2, batch_size=200, random_state=0)
    source = MemorySource([X[i : i + 100] for i in range(0, len(X), 100)], 3)
    result = run(source, online, tmp_path / "stream", batch_size=200, stop_after_idle=0.0, poll_timeout=0.0)
    streamed = streamem.load(tmp_path / "stream")
    assert type(streamed) is streamem.OnlineGaussianMixture
    assert streamed.n_samples_seen_ == result.rows == len(X)
    np.testing.assert_array_equal(streamed.means_, result.model.means_)

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "LATEST").write_text("{}")
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        streamem.load(tmp_path / "other")
