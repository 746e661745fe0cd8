"""The numerical core: the covariance registry, frozen parameters, the per-chunk kernels,
mergeable sufficient statistics and the M-steps. It imports only numpy and scipy."""
