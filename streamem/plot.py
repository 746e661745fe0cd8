"""Pictures of a fitted mixture (matplotlib, an optional extra; the edge of the house).

``model_figure`` draws the convergence curve (mean log-likelihood per iteration), the
trajectory of the component means over the iterations, and, given a sample of the data, a
2-D view of it with each component's covariance ellipse; ``bic_figure`` draws BIC
against K for a table of candidates. Figures are built without pyplot, so no display is
needed.
"""

from __future__ import annotations

import numpy as np

from streamem.models.select import chosen_row

__all__ = ["bic_figure", "model_figure", "projection_matrix", "sample_rows"]

_ELLIPSE_SCALE = 2.4477  # sqrt of the 95% quantile of chi-squared with 2 degrees of freedom


def _figure(n_panels: int, width: float = 5.0):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'streamem[plot]'") from None
    figure = Figure(figsize=(width * n_panels, 4.2), layout="constrained")
    return figure, figure.subplots(1, n_panels, squeeze=False)[0]


def sample_rows(X, n_points: int, seed: int = 0) -> np.ndarray:
    """Up to ``n_points`` rows of a (dask or numpy) array, drawn without replacement."""
    n_samples = X.shape[0]
    rows = np.sort(np.random.default_rng(seed).choice(n_samples, size=min(n_points, n_samples), replace=False))
    sample = X[rows]
    return np.asarray(sample.compute() if hasattr(sample, "compute") else sample, dtype=np.float64)


def _component_covariances(gm) -> np.ndarray:
    """Every component's full (D, D) covariance, whatever the covariance type."""
    return gm.fitted_params().full_covariances


def _mixture_covariance(gm) -> np.ndarray:
    full = _component_covariances(gm)
    centre = gm.weights_ @ gm.means_
    spread = np.einsum("k,kij->ij", gm.weights_, full + gm.means_[:, :, None] * gm.means_[:, None, :])
    return spread - np.outer(centre, centre)


def projection_matrix(gm, projection: str = "auto") -> tuple[np.ndarray, list[str]]:
    """A (n_features, 2) matrix onto the view's axes, and the axes' labels.

    ``"first"``: the first two features; ``"pca"``: the two leading principal axes of the
    fitted mixture's covariance; ``"auto"``: PCA when there are more than two features.
    """
    n_features = gm.n_features_in_
    if projection == "auto":
        projection = "pca" if n_features > 2 else "first"
    if projection == "pca":
        values, vectors = np.linalg.eigh(_mixture_covariance(gm))
        order = np.argsort(values)[::-1][:2]
        matrix = vectors[:, order]
        if matrix.shape[1] < 2:
            matrix = np.column_stack([matrix, np.zeros(n_features)])
        return matrix, ["principal axis 1", "principal axis 2"]
    matrix = np.zeros((n_features, 2))
    matrix[0, 0] = 1.0
    if n_features > 1:
        matrix[1, 1] = 1.0
    return matrix, ["feature 0", "feature 1" if n_features > 1 else "(none)"]


def _ellipse(ax, centre, covariance, color):
    from matplotlib.patches import Ellipse

    values, vectors = np.linalg.eigh(covariance)
    values = np.clip(values, 0.0, None)
    angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
    width, height = 2 * _ELLIPSE_SCALE * np.sqrt(values[::-1])
    ax.add_patch(Ellipse(centre, width, height, angle=angle, fill=False, color=color, lw=1.8))


def model_figure(gm, points: np.ndarray | None = None, projection: str = "auto"):
    """Convergence curve, means trajectory, (with ``points``) a 2-D view with ellipses, and
    (for a model chosen among several K) BIC against K."""
    selection = getattr(gm, "selection_", None)
    figure, axes = _figure(2 + (points is not None) + (selection is not None))
    colors = [f"C{k % 10}" for k in range(gm.n_components)]
    history = gm.history_
    ax = axes[0]
    if history:
        iterations = [h["iteration"] for h in history]
        ax.plot(iterations, [h["log_likelihood"] for h in history], marker="o", ms=3)
    ax.set(title="Convergence", xlabel="iteration", ylabel="mean log-likelihood per sample")
    ax.grid(alpha=0.3)

    matrix, labels = projection_matrix(gm, projection)
    path = np.asarray(gm.means_history_) @ matrix  # (iterations + 1, K, 2)
    ax = axes[1]
    for k in range(gm.n_components):
        ax.plot(path[:, k, 0], path[:, k, 1], color=colors[k], lw=1.2, marker=".", ms=3)
        ax.plot(*path[0, k], marker="x", color=colors[k], ms=7)
        ax.plot(*path[-1, k], marker="o", color=colors[k], ms=7)
    ax.set(title="Means over the iterations (x: start, o: end)", xlabel=labels[0], ylabel=labels[1])
    ax.grid(alpha=0.3)

    if points is not None:
        ax = axes[2]
        projected = points @ matrix
        labels_of_points = gm.predict(points)
        ax.scatter(projected[:, 0], projected[:, 1], s=3, alpha=0.35, c=[colors[k] for k in labels_of_points])
        for k, full in enumerate(_component_covariances(gm)):
            _ellipse(ax, gm.means_[k] @ matrix, matrix.T @ full @ matrix, colors[k])
        ax.set(title=f"Data ({len(points)} points) and 95% ellipses", xlabel=labels[0], ylabel=labels[1])
        ax.autoscale_view()
    if selection is not None:
        _draw_criterion(axes[-1], selection, getattr(gm, "selection_criterion_", "bic"))
    return figure


def bic_figure(table: list[dict], criterion: str = "bic"):
    """A criterion (BIC by default) against the number of components, one line per
    covariance type, one row of ``table`` (``selection_``) per candidate."""
    figure, (ax,) = _figure(1, width=6.0)
    _draw_criterion(ax, table, criterion)
    return figure


def _draw_criterion(ax, table: list[dict], criterion: str) -> None:
    """The criterion that chose the model against K, one line per covariance type; a
    candidate with a collapsed component (a spurious maximum, never chosen over a sound
    one) crossed out."""
    rows = [row for row in table if criterion in row]
    types = list(dict.fromkeys(row.get("covariance_type", "") for row in rows))
    for t in types:
        line = sorted((row for row in rows if row.get("covariance_type", "") == t), key=lambda row: row["n_components"])
        drawn = ax.plot(
            [row["n_components"] for row in line],
            [row[criterion] for row in line],
            marker="o",
            label=f"{criterion.upper()} {t}".strip(),
        )
        spurious = [row for row in line if row.get("collapsed")]
        if spurious:
            ax.plot(
                [row["n_components"] for row in spurious],
                [row[criterion] for row in spurious],
                ls="none",
                marker="x",
                ms=10,
                color=drawn[0].get_color(),
            )
    best = chosen_row(rows, criterion)
    ax.axvline(best["n_components"], color="grey", ls="--", lw=1)
    chosen = f"K={best['n_components']}" + (f", {best['covariance_type']}" if len(types) > 1 else "")
    ax.set(title=f"Lowest {criterion.upper()} at {chosen}", xlabel="n_components", ylabel=criterion.upper())
    ax.legend()
    ax.grid(alpha=0.3)
