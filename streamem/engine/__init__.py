"""The engine: passes over chunked data and their tree reductions (the only code that builds
dask graphs), the EM loop with its acceleration and stopping rule, starts and
split-and-merge moves, and the row-wise outputs of a fitted mixture."""
