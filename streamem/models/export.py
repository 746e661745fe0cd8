"""ONNX export: a fitted mixture's ``predict``, ``predict_proba`` and ``score_samples`` as one
ONNX graph, through the equivalent scikit-learn estimator (``to_sklearn()``) and skl2onnx.

The graph takes ``X`` of shape (n_rows, n_features) and gives ``label`` (n_rows, 1),
``probabilities`` (n_rows, n_components) and ``score_samples`` (n_rows, 1). It needs the
``onnx`` extra (``pip install 'streamem[onnx]'``: skl2onnx and onnxruntime).
"""

from __future__ import annotations

import numpy as np

from streamem.data.store import atomic_path

__all__ = ["to_onnx"]

OUTPUTS = ("label", "probabilities", "score_samples")


def to_onnx(model, path=None, dtype=np.float64):
    """``model`` (a fitted streamem mixture) as an ONNX ``ModelProto``, written to ``path``
    (atomically) when given.

    Parameters
    ----------
    model : GaussianMixture, OnlineGaussianMixture or BayesianGaussianMixture, fitted
    path : str or path, default=None
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        The input's and the computation's type: float32 graphs are smaller and faster, and
        their log-densities carry float32 rounding.

    Returns
    -------
    onnx.ModelProto
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"expected dtype float64 or float32, got {dtype}")
    try:
        from skl2onnx import to_onnx as convert
    except ImportError:
        raise ImportError("ONNX export needs skl2onnx: pip install 'streamem[onnx]'") from None
    estimator = model.to_sklearn()  # raises NotFittedError for an unfitted model
    graph = convert(
        estimator, np.zeros((1, model.n_features_in_), dtype=dtype), options={id(estimator): {"score_samples": True}}
    )
    if path is not None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(graph.SerializeToString())
    return graph
