"""Inputs where users keep them (Parquet data sets, HDF5, NetCDF, xarray) and labelled
outputs (predict to Parquet or a zarr group, outliers, per-row scores)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr

import streamem
from streamem.data.formats import parquet_pieces
from streamem.data.storage import location

from .helpers import cli, mixture_data

h5py = pytest.importorskip("h5py")
xr = pytest.importorskip("xarray")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A Parquet data set: 4 files of 1500 rows in row groups of 400, numeric and text columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("table") / "points"
    folder.mkdir()
    X, y = mixture_data(n_samples=6000, n_components=3)
    for part in range(4):
        rows = slice(part * 1500, (part + 1) * 1500)
        frame = pd.DataFrame(X[rows], columns=["a", "b", "c"]).assign(id=np.arange(6000)[rows], tag="t")
        pq.write_table(pa.Table.from_pandas(frame), folder / f"part-{part}.parquet", row_group_size=400)
    return folder, X, y


def test_parquet_data_set_is_read_by_row_groups_with_columns(table):
    folder, X, _ = table
    pieces, chosen = parquet_pieces(location(folder), ["a", "c"], target_rows=400)
    assert chosen == ["a", "c"] and len(pieces) == 16  # every row group alone (4 per file)
    assert [rows for _, _, rows in pieces[:4]] == [400, 400, 400, 300]
    data = streamem.read_data(folder, columns=["a", "c"])
    assert data.shape == (6000, 2) and sum(data.chunks[0]) == 6000
    np.testing.assert_array_equal(data.compute(), X[:, [0, 2]])
    assert data.chunks[0] == (1500,) * 4  # small row groups: a run of them per chunk, never across files
    # one file alone, and the numeric columns by default (the text column is left out when named)
    single = streamem.read_data(folder / "part-1.parquet", columns=["a", "b", "c", "id"])
    np.testing.assert_array_equal(single[:, :3].compute(), X[1500:3000])
    with pytest.raises(ValueError, match="non-numeric"):
        streamem.read_data(folder)
    with pytest.raises(ValueError, match=r"columns \['zz'\] not in"):
        streamem.read_data(folder, columns=["zz"])


def test_hdf5_dataset_by_path_inside_the_file(tmp_path):
    X, _ = mixture_data(n_samples=5000)
    with h5py.File(tmp_path / "data.h5", "w") as handle:
        handle.create_dataset("/group/X", data=X, chunks=(512, 3))
        handle.create_dataset("/group/other", data=np.zeros(3))
    data = streamem.read_data(f"{tmp_path / 'data.h5'}:/group/X")
    assert all(rows % 512 == 0 for rows in data.chunks[0][:-1])
    np.testing.assert_array_equal(data.compute(), X)
    np.testing.assert_array_equal(
        streamem.read_data(f"{tmp_path / 'data.h5'}:/group/X", columns=[2, 0]).compute(), X[:, [2, 0]]
    )
    with pytest.raises(ValueError, match="datasets"):
        streamem.read_data(tmp_path / "data.h5")  # two datasets: which one?
    with pytest.raises(ValueError, match="no dataset"):
        streamem.read_data(f"{tmp_path / 'data.h5'}:/group/nothing")
    with pytest.raises(ValueError, match="2-D"):
        streamem.read_data(f"{tmp_path / 'data.h5'}:/group/other")
    gm = streamem.GaussianMixture(3, random_state=0).fit(f"{tmp_path / 'data.h5'}:/group/X")
    reference = streamem.GaussianMixture(3, random_state=0).fit(da.from_array(X, chunks=data.chunks))
    np.testing.assert_allclose(gm.means_, reference.means_, rtol=1e-10)
    fitted = cli(
        "fit",
        f"{tmp_path / 'data.h5'}:/group/X",
        "--n-components",
        3,
        "--columns",
        "0,1",
        "--out",
        tmp_path / "m.zarr",
        "--quiet",
    )
    assert fitted.returncode == 0, fitted.stderr
    assert streamem.load(tmp_path / "m.zarr").n_features_in_ == 2


def test_netcdf_variable_or_variables_as_columns(tmp_path):
    X, _ = mixture_data(n_samples=2000)
    time = pd.date_range("2026-01-01", periods=2000, freq="h")
    dataset = xr.Dataset(
        {"obs": (("time", "band"), X), "t2m": ("time", X[:, 0]), "rh": ("time", X[:, 1])},
        coords={"time": time, "band": ["r", "g", "b"]},
    )
    dataset.to_netcdf(tmp_path / "data.nc", engine="h5netcdf")
    np.testing.assert_array_equal(streamem.read_data(f"{tmp_path / 'data.nc'}:obs").compute(), X)
    both = streamem.read_data(tmp_path / "data.nc", columns=["rh", "t2m"])
    np.testing.assert_array_equal(both.compute(), X[:, [1, 0]])
    with pytest.raises(ValueError, match="no variable"):
        streamem.read_data(f"{tmp_path / 'data.nc'}:nothing")
    fitted = cli(
        "fit", tmp_path / "data.nc", "--columns", "t2m,rh", "--n-components", 2, "--out", tmp_path / "m.zarr", "--quiet"
    )
    assert fitted.returncode == 0, fitted.stderr


def test_xarray_dataarray_with_feature_dim_and_labels_with_coordinates():
    X, y = mixture_data(n_samples=2400)
    time = pd.date_range("2026-01-01", periods=2400, freq="min")
    array = xr.DataArray(X.T, dims=("band", "time"), coords={"band": ["r", "g", "b"], "time": time})
    gm = streamem.GaussianMixture(3, random_state=0).fit(array, feature_dim="band")
    reference = streamem.GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(gm.means_, reference.means_, rtol=1e-8)
    labels = gm.predict(array)
    assert isinstance(labels, xr.DataArray) and labels.dims == ("time",) and labels.name == "component"
    np.testing.assert_array_equal(labels["time"].values, time.values)
    np.testing.assert_array_equal(labels.values, reference.predict(X))
    proba = gm.predict_proba(array.chunk({"time": 500}))  # on dask: lazy
    assert proba.dims == ("time", "responsibility_column") and proba.shape == (2400, 3)
    np.testing.assert_allclose(proba.values, reference.predict_proba(X), atol=1e-12)
    # an image: samples over (y, x), features along band; labels come back as an image
    image = xr.DataArray(X.reshape(40, 60, 3), dims=("y", "x", "band"), coords={"y": np.arange(40) * 10.0})
    labels = gm.predict(image)
    assert labels.dims == ("y", "x") and labels.shape == (40, 60)
    np.testing.assert_array_equal(labels.values.ravel(), reference.predict(X))
    np.testing.assert_array_equal(labels["y"].values, image["y"].values)
    with pytest.raises(ValueError, match="feature_dim"):
        streamem.GaussianMixture(3).fit(array, feature_dim="nothing")


def test_predict_writes_a_labelled_parquet_data_set_partition_by_partition(table, tmp_path):
    folder, X, _ = table
    assert (
        cli(
            "fit",
            folder,
            "--columns",
            "a,b,c",
            "--n-components",
            3,
            "--seed",
            0,
            "--out",
            tmp_path / "m.zarr",
            "--quiet",
        ).returncode
        == 0
    )
    gm = streamem.load(tmp_path / "m.zarr")
    result = cli("predict", tmp_path / "m.zarr", folder, "--columns", "a,b,c", "--out", tmp_path / "labelled.parquet")
    assert result.returncode == 0, result.stderr
    parts = sorted(p.name for p in (tmp_path / "labelled.parquet").iterdir())
    assert len(parts) == len(parquet_pieces(location(folder), ["a", "b", "c"])[0]) and parts[0] == "part-00000.parquet"
    out = pd.read_parquet(tmp_path / "labelled.parquet")
    assert list(out.columns) == ["a", "b", "c", "id", "tag", "component", "responsibility", "log_density"]
    np.testing.assert_array_equal(out["id"], np.arange(6000))
    assert (out["tag"] == "t").all()
    np.testing.assert_array_equal(out["component"], gm.predict(X))
    np.testing.assert_allclose(out["responsibility"], gm.predict_proba(X).max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(out["log_density"], gm.score_samples(X), rtol=1e-12)
    # outliers: the rows below the 0.02-quantile of the log-density
    result = cli(
        "predict",
        tmp_path / "m.zarr",
        folder,
        "--columns",
        "a,b,c",
        "--threshold",
        0.02,
        "--out",
        tmp_path / "flagged.parquet",
    )
    assert result.returncode == 0, result.stderr
    flagged = pd.read_parquet(tmp_path / "flagged.parquet")
    scores = gm.score_samples(X)
    np.testing.assert_array_equal(flagged["outlier"], scores < np.quantile(scores, 0.02))
    assert flagged["outlier"].sum() == 120


@pytest.mark.slow
def test_predict_labelled_zarr_group_threshold_labels_and_per_row_scores(tmp_path):
    assert (
        cli(
            "make-data",
            tmp_path / "points.zarr",
            "--n-samples",
            5000,
            "--n-features",
            2,
            "--n-components",
            2,
            "--chunk-size",
            1000,
            "--quiet",
        ).returncode
        == 0
    )
    assert (
        cli(
            "fit", tmp_path / "points.zarr", "--n-components", 2, "--seed", 0, "--out", tmp_path / "m.zarr", "--quiet"
        ).returncode
        == 0
    )
    gm = streamem.load(tmp_path / "m.zarr")
    X = zarr.open_group(str(tmp_path / "points.zarr"), mode="r")["X"][...]
    scores = gm.score_samples(X)
    result = cli(
        "predict",
        tmp_path / "m.zarr",
        tmp_path / "points.zarr",
        "--labelled",
        "--threshold",
        0.1,
        "--out",
        tmp_path / "labelled.zarr",
    )
    assert result.returncode == 0, result.stderr
    group = zarr.open_group(str(tmp_path / "labelled.zarr"), mode="r")
    assert sorted(group.array_keys()) == ["X", "component", "log_density", "outlier", "responsibility"]
    np.testing.assert_array_equal(group["X"][...], X)
    np.testing.assert_array_equal(group["component"][...], gm.predict(X))
    np.testing.assert_allclose(group["log_density"][...], scores, rtol=1e-12)
    np.testing.assert_array_equal(group["outlier"][...], scores < np.quantile(scores, 0.1))
    # plain labels with outliers as -1
    result = cli(
        "predict", tmp_path / "m.zarr", tmp_path / "points.zarr", "--threshold", 0.1, "--out", tmp_path / "labels.npy"
    )
    assert result.returncode == 0, result.stderr
    labels = np.load(tmp_path / "labels.npy")
    np.testing.assert_array_equal(labels, np.where(scores < np.quantile(scores, 0.1), -1, gm.predict(X)))
    result = cli("score", tmp_path / "m.zarr", tmp_path / "points.zarr", "--per-row", "--out", tmp_path / "s.zarr")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "s.zarr"), mode="r")[...], scores, rtol=1e-12)
    # bad combinations: usage errors; an existing output: one line, exit 1, untouched
    usage = [
        ("--proba", "--out", tmp_path / "p.parquet"),
        ("--labelled", "--out", tmp_path / "p.npy"),
        ("--threshold", 1.5, "--out", tmp_path / "p.npy"),
    ]
    for args in usage:
        assert cli("predict", tmp_path / "m.zarr", tmp_path / "points.zarr", *args).returncode == 2, args
    assert cli("score", tmp_path / "m.zarr", tmp_path / "points.zarr", "--per-row").returncode == 2
    again = cli(
        "predict", tmp_path / "m.zarr", tmp_path / "points.zarr", "--labelled", "--out", tmp_path / "labelled.zarr"
    )
    assert again.returncode == 1 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert sorted(zarr.open_group(str(tmp_path / "labelled.zarr"), mode="r").array_keys())[-2] == "outlier"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_feature_dim_as_a_parameter_is_kept_by_a_saved_model(tmp_path):
    X, _ = mixture_data(n_samples=900)
    array = xr.DataArray(X.T, dims=("band", "time"), coords={"time": np.arange(900) * 2})
    gm = streamem.GaussianMixture(3, random_state=0, feature_dim="band").fit(array)
    gm.save(tmp_path / "m.zarr")
    loaded = streamem.load(tmp_path / "m.zarr")
    labels = loaded.predict(array)
    assert loaded.feature_dim == "band" and labels.dims == ("time",)
    np.testing.assert_array_equal(labels.values, gm.predict(X))
