"""Choosing the number of components by BIC.

Fits K = 1..``--max-k`` to generated data with 5 true components and keeps the K with the
lowest BIC (Schwarz's criterion: -2 log-likelihood + parameters x log n); draws BIC and
AIC against K.

    python examples/choose_k_by_bic.py                       # ~15 s on 2 cores
    python examples/choose_k_by_bic.py --n-samples 20000 --max-k 6 --out bic.png

Each K is a separate fit here, one pass over the data per EM iteration.
"""

from __future__ import annotations

import argparse
import time

import dask.array as da
import numpy as np

import streamem
from streamem.plot import bic_figure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--max-k", type=int, default=9)
    parser.add_argument("--out", default="bic.png", help="where to draw BIC against K")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    centres = rng.uniform(-8, 8, size=(5, 4))
    X = centres[rng.integers(5, size=args.n_samples)] + rng.normal(size=(args.n_samples, 4))
    data = da.from_array(X, chunks=(max(1, args.n_samples // 8), 4))

    table = []
    for k in range(1, args.max_k + 1):
        start = time.perf_counter()
        gm = streamem.GaussianMixture(k, n_init=2, random_state=0).fit(data)
        table.append({"n_components": k, "bic": gm.bic(data), "aic": gm.aic(data), "lower_bound": gm.lower_bound_})
        print(f"K={k}: BIC {table[-1]['bic']:.1f}, AIC {table[-1]['aic']:.1f} ({time.perf_counter() - start:.1f} s)")
    best = min(table, key=lambda row: row["bic"])
    print(f"lowest BIC at K={best['n_components']} (the data has 5 components)")
    bic_figure(table).savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return best["n_components"]


if __name__ == "__main__":
    main()
