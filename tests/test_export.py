"""ONNX export: the graph's outputs against streamem's own, run by onnxruntime."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import streamem

from .helpers import COVARIANCE_TYPES, cli, mixture_data

rt = pytest.importorskip("onnxruntime")


def _run(path, X):
    session = rt.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["X"]
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities", "score_samples"]
    return session.run(None, {"X": X})


def _assert_same_outputs(model, outputs, X, atol=1e-5):
    label, proba, score = outputs
    np.testing.assert_array_equal(label.ravel(), model.predict(X))
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=atol)
    np.testing.assert_allclose(score.ravel(), model.score_samples(X), rtol=atol, atol=atol)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_graph_gives_streamem_outputs(tmp_path, covariance_type):
    X, _ = mixture_data(3000, 4, 3, seed=1)
    model = streamem.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    model.to_onnx(tmp_path / "m.onnx")
    held_out, _ = mixture_data(500, 4, 3, seed=2)
    _assert_same_outputs(model, _run(tmp_path / "m.onnx", held_out), held_out)


def test_online_and_variational_models_export(tmp_path):
    X, _ = mixture_data(6000, 3, 3, seed=3)
    online = streamem.OnlineGaussianMixture(3, random_state=0).fit(X)
    online.to_onnx(tmp_path / "online.onnx")
    _assert_same_outputs(online, _run(tmp_path / "online.onnx", X), X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bayesian = streamem.BayesianGaussianMixture(3, random_state=0).fit(X)
    bayesian.to_onnx(tmp_path / "bayesian.onnx")
    _assert_same_outputs(bayesian, _run(tmp_path / "bayesian.onnx", X), X)


def test_float32_graph(tmp_path):
    X, _ = mixture_data(2000, 3, 3, seed=4)
    model = streamem.GaussianMixture(3, random_state=0).fit(X)
    graph = model.to_onnx(dtype=np.float32)
    (tmp_path / "m.onnx").write_bytes(graph.SerializeToString())
    label, proba, score = _run(tmp_path / "m.onnx", X.astype(np.float32))
    assert score.dtype == np.float32
    np.testing.assert_allclose(score.ravel(), model.score_samples(X), rtol=1e-4, atol=1e-4)
    assert np.mean(label.ravel() == model.predict(X)) > 0.999


def test_command_line_export_and_errors(tmp_path):
    X, _ = mixture_data(2000, 3, 2, seed=5)
    streamem.GaussianMixture(2, random_state=0).fit(X).save(tmp_path / "m.zarr")
    result = cli("export-onnx", tmp_path / "m.zarr", tmp_path / "m.onnx")
    assert result.returncode == 0, result.stderr
    _assert_same_outputs(streamem.load(tmp_path / "m.zarr"), _run(tmp_path / "m.onnx", X), X)
    missing = cli("export-onnx", tmp_path / "none.zarr", tmp_path / "x.onnx")
    assert missing.returncode == 1 and missing.stderr.startswith("error:") and len(missing.stderr.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(ValueError, match="expected dtype float64 or float32"):
        streamem.load(tmp_path / "m.zarr").to_onnx(dtype=np.int32)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        streamem.GaussianMixture(2).to_onnx()
