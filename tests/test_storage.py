"""Data, models and checkpoints in an object store: a real S3-compatible server (moto in
server mode, ``s3_server``) on a loopback port, driven through the API and the command line."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import zarr

import streamem
from streamem.data.generate import make_data
from streamem.data.storage import location, parse_storage_options
from streamem.stream import run
from streamem.stream.sources.files import DirectorySource

from .helpers import cli, mixture_data

pytest.importorskip("s3fs")


def keys(prefix: str) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return sorted(fs.find(prefix))


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_save_load_predict_in_a_bucket_equal_the_same_on_local_disk(s3_server, tmp_path):
    X, _ = mixture_data(n_samples=4000)
    zarr.create_array(
        location("s3://data/x.zarr").zarr_store(read_only=False), shape=X.shape, chunks=(700, 3), dtype="f8"
    )[...] = X
    start = dict(n_components=3, random_state=0, max_iter=20, tol=0)
    remote = streamem.GaussianMixture(**start, checkpoint="s3://data/runs/ck").fit("s3://data/x.zarr")
    local = streamem.GaussianMixture(**start).fit(da_chunks(X, 700))
    np.testing.assert_allclose(remote.means_, local.means_, rtol=1e-10, atol=1e-10)
    remote.save("s3://data/models/m.zarr")
    loaded = streamem.load("s3://data/models/m.zarr")
    np.testing.assert_array_equal(loaded.covariances_, remote.covariances_)
    labels = loaded.predict("s3://data/x.zarr").compute()
    np.testing.assert_array_equal(labels, local.predict(X))
    # the checkpoint in the bucket holds the fit: it loads, and a second fit resumes from it at once
    np.testing.assert_allclose(streamem.load("s3://data/runs/ck").means_, remote.means_)
    again = streamem.GaussianMixture(**start, checkpoint="s3://data/runs/ck").fit("s3://data/x.zarr")
    assert again.n_iter_ == remote.n_iter_
    assert [k.rsplit("/", 1)[-1] for k in keys("data/runs/ck") if "/state-" not in k] == ["LATEST"]


def da_chunks(X, rows):
    import dask.array as da

    return da.from_array(X, chunks=(rows, X.shape[1]))


def test_storage_options_instead_of_the_environment(s3_server, monkeypatch):
    options = parse_storage_options([f"endpoint_url={s3_server}", "key=testing", "secret=testing"])
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    make_data("s3://data/made.zarr", 3000, 2, 2, chunk_size=1000, storage_options=options)
    X = streamem.read_data("s3://data/made.zarr", storage_options=options)
    assert X.shape == (3000, 2) and X.chunks[0] == (1000, 1000, 1000)
    gm = streamem.GaussianMixture(2, random_state=0).fit("s3://data/made.zarr", storage_options=options)
    gm.save("s3://data/m.zarr", storage_options=options)
    assert streamem.load("s3://data/m.zarr", storage_options=options).n_features_in_ == 2


def test_parse_storage_options():
    assert parse_storage_options(["anon=true", "endpoint_url=http://h:1", 'client_kwargs={"region_name": "x"}']) == {
        "anon": True,
        "endpoint_url": "http://h:1",
        "client_kwargs": {"region_name": "x"},
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_storage_options(["novalue"])


@pytest.mark.long
def test_cli_make_data_fit_predict_score_info_against_the_bucket(s3_server):
    assert (
        cli(
            "make-data",
            "s3://data/points.zarr",
            "--n-samples",
            6000,
            "--n-features",
            2,
            "--n-components",
            2,
            "--chunk-size",
            2000,
            "--quiet",
        ).returncode
        == 0
    )
    fitted = cli(
        "fit",
        "s3://data/points.zarr",
        "--n-components",
        2,
        "--seed",
        0,
        "--checkpoint",
        "s3://data/ck",
        "--out",
        "s3://data/model.zarr",
        "--quiet",
    )
    assert fitted.returncode == 0, fitted.stderr
    predicted = cli("predict", "s3://data/model.zarr", "s3://data/points.zarr", "--out", "s3://data/labels.zarr")
    assert predicted.returncode == 0, predicted.stderr
    labels = zarr.open_array(location("s3://data/labels.zarr").zarr_store(), mode="r")[...]
    truth = zarr.open_group(location("s3://data/points.zarr").zarr_store(), mode="r")["labels"][...]
    assert len(labels) == 6000 and max(np.mean(labels == truth), np.mean(labels != truth)) > 0.95
    scored = cli("score", "s3://data/model.zarr", "s3://data/points.zarr", "--log-json")
    assert scored.returncode == 0 and '"log_likelihood"' in scored.stdout
    # the endpoint given as a storage option rather than in the environment
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    shown = cli("info", "s3://data/model.zarr", "--storage-option", f"endpoint_url={s3_server}", env=env)
    assert shown.returncode == 0 and "GaussianMixture" in shown.stdout, shown.stderr


def test_wrong_bucket_or_key_is_one_line_and_writes_nothing(s3_server):
    make_data("s3://data/points.zarr", 2000, 2, 2, chunk_size=1000)
    before = keys("data")
    cases = [
        ("fit", "s3://data/no-such.zarr", "--n-components", 2, "--out", "s3://data/m.zarr"),
        ("fit", "s3://no-bucket/points.zarr", "--n-components", 2, "--out", "s3://data/m.zarr"),
        ("fit", "s3://data/points.zarr", "--n-components", 2, "--out", "s3://no-bucket/m.zarr"),
        ("make-data", "s3://no-bucket/x.zarr", "--n-samples", 10, "--n-features", 2, "--n-components", 1),
        ("predict", "s3://data/no-model.zarr", "s3://data/points.zarr", "--out", "s3://data/labels.zarr"),
    ]
    for args in cases:
        result = cli(*args)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "s3://" in lines[0], (args, result.stderr)
    assert keys("data") == before
    with pytest.raises(ValueError, match="no-bucket"):
        streamem.GaussianMixture(2).fit("s3://no-bucket/points.zarr")


def test_a_failed_save_leaves_nothing_in_the_bucket(s3_server, monkeypatch):
    gm = streamem.GaussianMixture(2, random_state=0).fit(mixture_data(n_samples=500, n_components=2)[0])
    gm.save("s3://data/m.zarr")
    before = {k: location(f"s3://{k}").read_bytes() for k in keys("data")}

    def broken(*args, **kwargs):
        raise OSError("the store went away")

    monkeypatch.setattr(zarr.Group, "create_array", broken)
    with pytest.raises(OSError, match="went away"):
        gm.save("s3://data/m.zarr")
    after = {k: location(f"s3://{k}").read_bytes() for k in keys("data")}
    assert after == before  # the model saved before is whole, and no temporary objects remain


def test_checkpointed_stream_from_a_growing_zarr_array_in_a_bucket(s3_server):
    X, _ = mixture_data(n_samples=9000, n_features=3, n_components=2)
    store = location("s3://data/stream.zarr").zarr_store(read_only=False)
    array = zarr.create_array(store, shape=(0, 3), chunks=(1000, 3), dtype="f8", fill_value=np.nan)
    array.append(X[:3000])

    def writer():
        for start in range(3000, 6000, 1500):
            time.sleep(0.3)
            array.append(X[start : start + 1500])

    thread = threading.Thread(target=writer)
    thread.start()
    model = streamem.OnlineGaussianMixture(2, random_state=0, warm_up=1000)
    result = run(
        "zarr:s3://data/stream.zarr",
        model,
        "s3://data/ck",
        "s3://data/model.zarr",
        n_features=3,
        batch_size=500,
        stop_after_idle=2.0,
        poll_timeout=0.05,
        labels="s3://data/labels.zarr",
    )
    thread.join()
    assert result.rows == 6000 and result.position == 6000 and result.checkpoints >= 1
    published = streamem.load("s3://data/model.zarr")
    np.testing.assert_allclose(published.means_, result.model.means_)
    # more rows arrive; the same command resumes after the checkpoint's position
    array.append(X[6000:])
    again = run(
        "zarr:s3://data/stream.zarr",
        streamem.OnlineGaussianMixture(2, random_state=0, warm_up=1000),
        "s3://data/ck",
        "s3://data/model.zarr",
        n_features=3,
        batch_size=500,
        stop_after_idle=0.5,
        poll_timeout=0.05,
        labels="s3://data/labels.zarr",
    )
    assert again.resumed and again.rows == 9000 and again.batches == 6
    labels = zarr.open_array(location("s3://data/labels.zarr").zarr_store(), mode="r")[...]
    assert len(labels) == 9000 and set(np.unique(labels)) <= {0, 1}
    assert streamem.load("s3://data/model.zarr").n_features_in_ == 3
    assert not [k for k in keys("data") if "/.ck" in k or ".tmp-" in k]


def test_cli_stream_from_a_bucket_with_a_wrong_bucket_is_one_line(s3_server):
    result = cli(
        "stream",
        "zarr:s3://no-bucket/stream.zarr",
        "--n-features",
        3,
        "--n-components",
        2,
        "--checkpoint",
        "s3://data/ck",
        "--out",
        "s3://data/m.zarr",
        "--stop-after-idle",
        0.1,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and "no-bucket" in lines[0]
    assert keys("data") == []


def test_parquet_data_set_in_a_bucket(s3_server):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import s3fs

    X, _ = mixture_data(n_samples=3000)
    fs = s3fs.S3FileSystem()
    for part in range(3):
        frame = pd.DataFrame(X[part * 1000 : (part + 1) * 1000], columns=["a", "b", "c"]).assign(name="x")
        with fs.open(f"data/table/part-{part}.parquet", "wb") as handle:
            pq.write_table(pa.Table.from_pandas(frame), handle, row_group_size=400)
    data = streamem.read_data("s3://data/table", columns=["a", "c"])
    assert data.shape == (3000, 2)
    np.testing.assert_array_equal(data.compute(), X[:, [0, 2]])


def test_dir_source_in_a_bucket_and_labelled_parquet_written_to_a_bucket(s3_server):
    import io as _io

    import pandas as pd
    import s3fs

    X, _ = mixture_data(n_samples=4000, n_features=3, n_components=2)
    fs = s3fs.S3FileSystem()
    for part in range(2):
        buffer = _io.BytesIO()
        np.save(buffer, X[part * 2000 : (part + 1) * 2000])
        fs.pipe_file(f"data/in/part-{part}.npy", buffer.getvalue())
    fs.pipe_file("data/in/part-9.npy", b"garbage")
    fs.invalidate_cache()
    source = DirectorySource("s3://data/in", 3, write_grace=0.0)  # the garbage is not being written: reject it now
    result = run(
        source,
        streamem.OnlineGaussianMixture(2, random_state=0, warm_up=1000),
        "s3://data/ck",
        batch_size=500,
        stop_after_idle=0.5,
        poll_timeout=0.05,
    )
    assert result.rows == 4000 and result.rejected == 1
    assert "data/in/dlq/part-9.npy" in keys("data/in") and "data/in/dlq/part-9.npy.reason" in keys("data/in")
    # a model in the bucket labels a Parquet data set in the bucket into another one there
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(id=np.arange(4000))
    with fs.open("data/table/part-0.parquet", "wb") as handle:
        frame.to_parquet(handle)
    streamem.GaussianMixture(2, random_state=0).fit(X).save("s3://data/m.zarr")
    done = cli(
        "predict", "s3://data/m.zarr", "s3://data/table", "--columns", "a,b,c", "--out", "s3://data/labelled.parquet"
    )
    assert done.returncode == 0, done.stderr
    fs.invalidate_cache()
    with fs.open("data/labelled.parquet/part-00000.parquet", "rb") as handle:
        labelled = pd.read_parquet(handle)
    assert list(labelled.columns[-3:]) == ["component", "responsibility", "log_density"] and len(labelled) == 4000
    assert not [k for k in keys("data") if "/." in k]  # no temporary objects left


def test_hdf5_and_netcdf_files_in_a_bucket(s3_server):
    import io as _io

    import h5py
    import s3fs
    import xarray as xr

    X, _ = mixture_data(n_samples=3000)
    fs = s3fs.S3FileSystem()
    buffer = _io.BytesIO()  # HDF5 is written with seeks: in memory, then one PUT
    with h5py.File(buffer, "w") as h5:
        h5.create_dataset("/g/X", data=X, chunks=(256, 3))
    fs.pipe_file("data/x.h5", buffer.getvalue())
    np.testing.assert_array_equal(streamem.read_data("s3://data/x.h5:/g/X", columns=[0, 2]).compute(), X[:, [0, 2]])
    with fs.open("data/x.nc", "wb") as handle:
        handle.write(xr.Dataset({"obs": (("time", "band"), X)}).to_netcdf(engine="h5netcdf"))
    np.testing.assert_array_equal(streamem.read_data("s3://data/x.nc:obs").compute(), X)
