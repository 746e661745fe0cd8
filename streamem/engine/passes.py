"""The only module that builds dask graphs for statistics: one pass, a tree reduction.

A pass applies a chunk function to every row-chunk of the data (all features in one
chunk) and adds the results in a tree of fan-in ``split_every``; only the small per-chunk
results travel, and the client receives the total. The chunks are grouped into a few tasks
per thread of the local scheduler, each running its chunks' own tasks one after the other,
so that a pass costs a few tasks per thread however many chunks there are. On a cluster,
chunks kept in the workers' memory are added where they are, one task per worker thread:
consecutive chunks on each worker (:func:`persist` puts them there; chunks found elsewhere
are copied there once), so that each worker sends the sums of a few subtrees, not one
result per chunk. Whatever the grouping, the results are added on one fixed binary tree
over the chunks' indices (:func:`_tree_add`): every sum is of the same two partial sums, so
a pass's total depends on the chunking alone, bit for bit, never on the number of threads
or workers or on which of them ran a chunk. Chunks smaller than :data:`RUN_VALUES` values
go in runs of consecutive chunks, the nodes of one level of that tree (:func:`run_level`),
never split between tasks or workers; the E-steps take a run's rows stacked, in one call
(``stack``), so that small chunks cost what a few large ones do. A pass's tasks are
planned once per scheduler and reused with new shared arguments, which go to each worker
once per pass; what the chunk function makes of them (its kernels) is made once per thread
(``prepare``).
Predictions map a function over the chunks lazily (:func:`apply_blocks`), and online fits
read a dask array as mini-batches, one chunk computed at a time (:func:`row_batches`).
Rows in memory become a dask array of chunks of a few MiB (:func:`from_numpy`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import operator
import os
import pickle
import sys
import threading
import time
import uuid
from typing import NamedTuple

import dask
import dask.array as da
import numpy as np
from dask.optimization import cull
from dask.task_spec import DataNode, Task, TaskRef  # dask's public task classes (dask >= 2025.1)

__all__ = [
    "ChunkedData",
    "PassCounter",
    "apply_blocks",
    "chunk_progress",
    "compute_key",
    "distributed_client",
    "persist",
    "placement",
    "row_batches",
    "run_level",
]

SPLIT_EVERY = 8
TASKS_PER_THREAD = 4  # chunk tasks of a pass per thread of the local scheduler: load balance against per-task overhead
#: per thread of a cluster, for chunks its tasks read: a task there costs a round trip
CLUSTER_TASKS_PER_THREAD = 1
#: shared arguments at most this large, times the tasks of a pass, go inside each task on a cluster
INLINE_BYTES = 16 << 20
#: chunks of fewer values than this go in runs of consecutive chunks of at least this many
#: values (:func:`run_level`), and the passes that allow it call their chunk function once
#: per run: a call's fixed cost (its Python, and on several threads the contention for
#: Python's lock between the many small numpy calls) outweighs a small chunk's arithmetic
RUN_VALUES = 1 << 16

logger = logging.getLogger(__name__)

_progress_bars = []  # the factories installed by chunk_progress, innermost last


@contextlib.contextmanager
def chunk_progress(make_bar):
    """While active, each pass reports its chunks as they finish, on any scheduler.

    ``make_bar(n_chunks)`` is called at the start of a pass and returns a context manager
    with ``update(n)`` (such as ``click.progressbar(length=n_chunks)``), entered for the
    pass. The tasks count their chunks as they go (at most every
    :data:`REPORT_SECONDS` each), on a cluster as events of the topic
    :data:`PROGRESS_TOPIC` that the client follows.
    """
    _progress_bars.append(make_bar)
    try:
        yield
    finally:
        _progress_bars.remove(make_bar)


PROGRESS_TOPIC = "streamem-progress"
REPORT_SECONDS = 0.1


@contextlib.contextmanager
def _reported(n_chunks: int, token: str):
    """The bar of a pass, if :func:`chunk_progress` is active: yields what its tasks report
    their chunks to (a function on the local scheduler; on a cluster, the pass's token,
    for events of :data:`PROGRESS_TOPIC`), or None. A pass that ends fills its bar."""
    if not _progress_bars:
        yield None
        return
    lock, counted = threading.Lock(), [0]
    with _progress_bars[-1](n_chunks) as bar:

        def update(n):
            with lock:  # from the scheduler's threads, or the client's event loop
                n = min(n, n_chunks - counted[0])
                counted[0] += n
                if n > 0:
                    bar.update(n)

        client = distributed_client()
        if client is None:
            yield update
        else:

            def received(event):
                pass_token, n = event[1]
                if pass_token == token:
                    update(n)

            client.subscribe_topic(PROGRESS_TOPIC, received)
            try:
                yield token
            finally:
                client.unsubscribe_topic(PROGRESS_TOPIC)
        update(n_chunks)


def _tree_add(nodes: dict, level: int, index: int, value, combine, n_chunks: int) -> None:
    """Put into ``nodes`` the partial sum ``value`` of node ``(level, index)`` of the fixed
    binary tree over ``n_chunks`` chunks (node ``(l, i)`` holds chunks ``[i 2^l, (i+1) 2^l)``),
    adding it to its sibling's, left then right, and on up while the sibling is there. A
    node without a right subtree (past the last chunk) is its parent. In whatever order
    the chunks' results arrive, every node's sum is the same: the root's is the total."""
    while (1 << level) < n_chunks:
        sibling = index ^ 1
        if sibling > index and (sibling << level) >= n_chunks:  # no right subtree
            level, index = level + 1, index // 2
            continue
        other = nodes.pop((level, sibling), None)
        if other is None:
            nodes[(level, index)] = value
            return
        value = combine(value, other) if index < sibling else combine(other, value)
        level, index = level + 1, index // 2
    nodes[(level, index)] = value


def _tree_total(nodes: dict):
    """The root's sum, once every chunk's result is in ``nodes``."""
    (value,) = nodes.values()
    return value


def _combine(combine, n_chunks, *parts):
    """The partial sums of several tasks' nodes (:func:`_tree_add`)."""
    nodes = dict(parts[0])
    for part in parts[1:]:
        for (level, index), value in part.items():
            _tree_add(nodes, level, index, value, combine, n_chunks)
    return nodes


def _complete_only(X, sample_weight):
    """Rows with a NaN get weight zero (and zeros for values), for initialisation passes."""
    nan = np.isnan(X).any(axis=1)
    if not nan.any():
        return X, sample_weight
    weight = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return np.where(np.isnan(X), 0, X), np.where(nan, 0.0, weight)


class _Shared:
    """Arguments sent once per pass and shared by its chunk tasks (opaque to dask), and what
    ``prepare`` makes of them: keywords for the chunk function, made once per thread that
    runs chunks of the pass (on each worker) and reused by its chunks."""

    def __init__(self, values: tuple, prepare=None, progress=None):
        self.values, self.prepare = values, prepare
        self.progress = progress  # where the tasks count their chunks (see _reported), or None
        self._local = threading.local()

    def __reduce__(self):
        return _Shared, (self.values, self.prepare, self.progress)

    def report(self, n_chunks: int) -> None:
        if callable(self.progress):
            self.progress(n_chunks)
        elif self.progress is not None:
            from distributed import get_worker

            get_worker().log_event(PROGRESS_TOPIC, [self.progress, n_chunks])

    def keywords(self) -> dict:
        if self.prepare is None:
            return {}
        prepared = getattr(self._local, "keywords", None)
        if prepared is None:
            prepared = self._local.keywords = self.prepare(*self.values)
        return prepared


def _call(func, X, sample_weight, labels, index, shared: _Shared, complete_only=False):
    if complete_only:
        X, sample_weight = _complete_only(X, sample_weight)
    keywords = shared.keywords() if labels is None else {**shared.keywords(), "labels": labels}
    if index is None:
        return func(X, sample_weight, *shared.values, **keywords)
    return func(X, sample_weight, index, *shared.values, **keywords)


class _Group:
    """The chunks of one task (opaque to dask): each chunk's task, run when its turn comes so
    that one chunk at a time is in memory, or the key of a chunk held by a worker."""

    def __init__(self, chunks, keys, members, n_chunks, level=0):
        self.chunks = chunks  # (X, sample_weight, labels, index) per chunk; the arrays: Task, key or None
        self.keys = keys  # the keys whose values the task receives
        self.members, self.n_chunks = members, n_chunks  # the chunks' indices (whole runs), of how many
        self.level = level  # the runs': the nodes of the fixed tree at this level (run_level)

    def run(self, func, combine, shared, complete_only, values, stack=False):
        """The group's nodes of the fixed tree (:func:`_tree_add`): with ``stack``, ``func``
        called once per run of chunks (their rows stacked), otherwise once per chunk."""
        values = dict(zip(self.keys, values))

        def resolve(part):
            if isinstance(part, (Task, DataNode)):
                return part({k: values[k] for k in part.dependencies})
            return None if part is None else values[part]

        level = self.level if stack else 0
        nodes, unreported, reported = {}, 0, -np.inf
        for node, chunks in _runs(self.members, self.chunks, level):
            x, w, y = (_stacked([resolve(chunk[part]) for chunk in chunks]) for part in range(3))
            value = _call(func, x, w, y, chunks[0][3], shared, complete_only)
            _tree_add(nodes, level, node, value, combine, self.n_chunks)
            if shared.progress is not None:
                unreported += len(chunks)
                if time.monotonic() - reported >= REPORT_SECONDS:
                    shared.report(unreported)
                    unreported, reported = 0, time.monotonic()
        if unreported:
            shared.report(unreported)
        return nodes


def _runs(members: list, chunks: list, level: int):
    """``(node, chunks)`` per run of ``members``: the chunks under one node of the fixed
    tree at ``level`` (consecutive members)."""
    start = 0
    while start < len(members):
        node, stop = members[start] >> level, start + 1
        while stop < len(members) and members[stop] >> level == node:
            stop += 1
        yield node, chunks[start:stop]
        start = stop


def _stacked(parts: list):
    """The chunks' arrays (or None) one on top of the other."""
    if len(parts) == 1 or parts[0] is None:
        return parts[0]
    return np.concatenate(parts)


def _same(chunk):
    return chunk


def _call_group(func, combine, shared, complete_only, stack, group, *values):
    if isinstance(shared, _Pickled):
        shared = pickle.loads(shared.data)
    return group.run(func, combine, shared, complete_only, values, stack)


class PassCounter:
    """The number of passes made over one data set, shared by its views."""

    def __init__(self):
        self.passes = 0


class ChunkedData:
    """A 2-D dask array split by rows, with optional per-row weights and labels aligned to it.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
    sample_weight : dask.array.Array of shape (n_samples,) or None
    timeout : float or None
        Seconds a pass may take on a distributed cluster.
    labels : dask.array.Array of shape (n_samples,) or None
        Each row's known component, -1 where unknown (passed to chunk functions that ask).
    counter : PassCounter, default=None
        Where the passes are counted: another ChunkedData's (``passes``), for rows derived
        from the same data (standardised ones), or a new one.
    """

    def __init__(
        self,
        X: da.Array,
        sample_weight: da.Array | None = None,
        timeout: float | None = None,
        labels=None,
        counter: PassCounter | None = None,
    ):
        self.counter = PassCounter() if counter is None else counter
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        if sample_weight is not None:
            sample_weight = sample_weight.rechunk((X.chunks[0],))
        if labels is not None:
            labels = labels.rechunk((X.chunks[0],))
        self.X = X
        self.sample_weight = sample_weight
        self.labels = labels
        self.complete_only = False
        self.timeout = timeout
        self._plans: dict = {}  # the tasks of a pass, per scheduler and kind of pass (see _plan)
        self._layouts: dict = {}  # the groups of chunks, per scheduler (see _groups)
        # the chunks' own graph, optimised and materialised once; each pass adds its tasks
        originals = [X, *(a for a in (sample_weight, labels) if a is not None)]
        collections = dask.optimize(*originals)
        self._graph = {}
        for original, collection in zip(originals, collections):
            self._graph.update(dict(collection.__dask_graph__()))
            if "distributed" in sys.modules:  # chunks persisted on a cluster are futures
                from distributed import futures_of

                self._graph.update({future.key: future for future in futures_of(original)})
        keys = iter([list(dask.core.flatten(c.__dask_keys__())) for c in collections])
        self.x_keys = next(keys)
        self.w_keys = [None] * len(self.x_keys) if sample_weight is None else next(keys)
        self.y_keys = [None] * len(self.x_keys) if labels is None else next(keys)
        self._starts = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]).tolist()
        self.level = run_level(X.chunks[0], X.shape[1])  # the runs of small chunks

    def complete_rows(self) -> ChunkedData:
        """The same chunks, where rows with a missing value (NaN) weigh nothing."""
        view = copy.copy(self)
        view.complete_only = True
        return view

    @property
    def n_chunks(self) -> int:
        return len(self.x_keys)

    @property
    def passes(self) -> int:
        """Passes over the data so far (calls of :meth:`map_reduce`, by this data and every
        view sharing its counter)."""
        return self.counter.passes

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def map_reduce(
        self,
        func,
        *shared,
        combine=operator.add,
        with_index=False,
        with_labels=False,
        prepare=None,
        stack=False,
        split_every: int = SPLIT_EVERY,
    ):
        """``combine``-total of ``func(X_chunk, w_chunk, *shared)`` over the chunks.

        With ``with_index``, the chunk's first row is passed after ``w_chunk`` (for random
        draws keyed by the row); with ``with_labels`` and labels, the chunk's labels as
        the keyword ``labels``. ``shared`` is sent once per pass, not once per chunk.
        ``prepare(*shared)``, when given, returns keywords for ``func`` that depend on the
        shared arguments alone (constants of the parameters): it is called once per thread
        that runs chunks of the pass, and its keywords are reused by that thread's chunks.
        ``stack``: ``func`` of the rows of consecutive chunks stacked is the ``combine`` of
        its chunks' (up to rounding), so that chunks smaller than :data:`RUN_VALUES` go to
        ``func`` a run at a time (:func:`run_level`; the runs, and so the bits, depend on the
        chunking alone).

        The chunks go in a few tasks per thread of the local scheduler, each running its
        chunks one after the other and adding their results (:class:`_Group`); on a cluster,
        in one task per worker thread, chunks kept on the workers where they are kept,
        consecutive chunks on each worker (:meth:`_place`): only the workers' partial sums
        travel. The tasks are planned once per scheduler and reused by every pass with new
        shared arguments, which travel inside each task when small
        (:func:`_with_shared_inline`).
        """
        self.counter.passes += 1
        plan = self._plan(with_index, with_labels)
        token = uuid.uuid4().hex
        shared_key = f"streamem-shared-{token}"
        graph = dict(plan.inputs)
        parts, placed = [], {}
        for g, (holder, group, keys) in enumerate(plan.groups):
            key = (f"streamem-group-{token}", g)
            # explicit references: a key held by the cluster may be absent from the graph sent
            graph[key] = (
                _call_group,
                func,
                combine,
                TaskRef(shared_key),
                self.complete_only,
                stack,
                group,
                *map(TaskRef, keys),
            )
            parts.append(key)
            if plan.cluster:
                placed[key] = holder
        level, combined = 0, []
        while len(parts) > 1:
            grouped = [parts[i : i + split_every] for i in range(0, len(parts), split_every)]
            parts = []
            for j, group in enumerate(grouped):
                key = (f"streamem-combine-{token}-{level}", j)
                graph[key] = (_combine, combine, self.n_chunks, *group)
                parts.append(key)
            combined += parts
            level += 1
        with _reported(self.n_chunks, token) as progress:
            graph[shared_key] = _Shared(shared, prepare, progress)
            if placed:  # on a cluster: each group task asks for its worker
                graph = _placed(_with_shared_inline(graph, shared_key, list(placed)), placed, combined)
            return _tree_total(compute_key(graph, parts[0], self.timeout))

    def _plan(self, with_index: bool, with_labels: bool) -> _Plan:
        """The groups of a pass (:meth:`_groups`) as tasks' arguments: ``(worker, _Group,
        keys)`` per group, and the part of the chunks' graph that they need; made once per
        scheduler (per cluster, or per number of threads) and kind of pass. On a cluster
        each :class:`_Group` (with its chunks' tasks) goes to a worker once, as the result of
        a task (recomputed elsewhere if that worker is lost), and every pass's group task
        refers to it: a pass sends only its new tasks' names and the shared arguments."""
        scheduler, groups = self._groups()
        key = (scheduler, with_index, with_labels)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        planned, needed = [], set()
        for holder, members in groups:
            chunks = [
                (
                    self._task(self.x_keys[i]),
                    self._task(self.w_keys[i]),
                    self._task(self.y_keys[i]) if with_labels else None,
                    self._starts[i] if with_index else None,
                )
                for i in members
            ]
            keys = set()
            for chunk in chunks:
                for part in chunk[:3]:
                    keys.update(part.dependencies if isinstance(part, (Task, DataNode)) else [part] if part else [])
            needed.update(keys)
            group = _Group(chunks, list(keys), members, self.n_chunks, self.level)
            planned.append((holder, group, list(keys)))
        inputs, _ = cull(self._graph, list(needed))  # the chunks' own tasks run inside the groups
        if not isinstance(scheduler, int):  # a cluster's client: each group sent once, kept by a task
            sent = []
            for holder, group, keys in planned:
                where = {} if holder is None else {"workers": [holder], "allow_other_workers": True}
                future = scheduler.submit(_same, group, pure=False, **where)
                inputs[future.key] = future
                sent.append((holder, TaskRef(future.key), keys))
            planned = sent
        plan = self._plans[key] = _Plan(planned, inputs, not isinstance(scheduler, int))
        return plan

    def _task(self, key):
        """A chunk's task, to run inside its group's task; the key of data held elsewhere."""
        task = self._graph.get(key)
        if isinstance(task, (Task, DataNode)):
            return task
        return key

    def _groups(self) -> tuple:
        """The scheduler (a client, or the number of threads) and the chunks' indices in
        groups of consecutive chunks, as ``(worker, indices)``: a few groups per thread of the
        local scheduler (worker None); on a cluster, one per thread of the worker that keeps
        the chunks, or for chunks the tasks read, one per worker thread, the workers in turn
        (so that no worker draws the tasks to itself). Made once per scheduler: passes on a
        cluster send no other request."""
        client = distributed_client()
        scheduler = int(dask.config.get("num_workers", None) or os.cpu_count() or 1) if client is None else client
        cached = self._layouts.get(scheduler)
        if cached is not None:
            return scheduler, cached
        if client is None:
            groups = [
                (None, part)
                for part in _split_runs(list(range(self.n_chunks)), TASKS_PER_THREAD * scheduler, self.level)
            ]
            self._layouts[scheduler] = groups
            return scheduler, groups
        holders = [None] * self.n_chunks
        try:
            threads = client.nthreads(callback_timeout=self.timeout) or {None: 1}
            held = [k for k in self.x_keys if not isinstance(self._graph.get(k), (Task, DataNode))]
            if held:
                holders = self._place(client, held, threads)
        except TimeoutError:
            raise _unreachable(client, self.timeout) from None
        buckets: dict = {}
        for i, holder in enumerate(holders):
            buckets.setdefault(holder, []).append(i)
        groups = []
        for holder, members in buckets.items():
            if holder is None:  # read by the tasks: a few per thread, spread over the workers in turn
                count = CLUSTER_TASKS_PER_THREAD * sum(threads.values()) * len(members) // self.n_chunks
                parts = _split_runs(members, count, self.level)
                turns = [w for w in sorted(threads, key=str) for _ in range(threads[w])] or [None]
                groups += [(turns[g % len(turns)], part) for g, part in enumerate(parts)]
            else:  # kept on a worker: one task per thread of that worker
                groups += [(holder, part) for part in _split_runs(members, threads.get(holder, 1), self.level)]
        self._layouts[client] = groups
        return client, groups

    def _place(self, client, held, threads) -> list:
        """Each chunk's worker, once consecutive chunks are on the same worker, as many on
        each as its share of the threads (:func:`placement`): a chunk kept elsewhere is
        copied there, once. The workers go along the chunks in the order of the chunks they
        already hold, so that chunks placed by :func:`persist` stay where they are."""
        from distributed import wait

        wait([self._graph[k] for k in held], timeout=self.timeout)  # where they are once computed
        who_has = client.sync(client.scheduler.who_has, keys=held, callback_timeout=self.timeout)
        holders = [(who_has.get(k) or [None])[0] for k in self.x_keys]
        positions = {}
        for i, holder in enumerate(holders):
            positions.setdefault(holder, []).append(i)
        order = sorted(threads, key=lambda w: (float(np.median(positions[w])) if w in positions else np.inf, str(w)))
        targets = placement(self.n_chunks, order, threads, self.level)
        kept = [i for i, holder in enumerate(holders) if holder is not None]
        moved = []
        for i in kept:
            target = targets[i]
            if target == holders[i]:
                continue
            old = self.x_keys[i]
            future = client.submit(_same, self._graph[old], workers=[target], pure=False)
            self._graph[future.key] = future
            self.x_keys[i] = future.key
            del self._graph[old]  # the copy replaces it
            holders[i] = target
            moved.append(future)
        wait(moved, timeout=self.timeout)
        if moved:
            logger.info("%d of %d chunks copied so that each worker holds consecutive chunks", len(moved), len(kept))
        return holders


def _with_shared_inline(graph: dict, shared_key: str, tasks: list) -> dict:
    """The graph of a pass on a cluster, with the shared arguments pickled once into each of
    ``tasks`` (one per worker thread) when they are small (:data:`INLINE_BYTES`): each task
    then arrives with them, instead of each worker fetching them from the worker that
    holds them (a round trip for every worker). Larger ones stay one key of the graph, which
    the workers copy from each other."""
    try:
        pickled = pickle.dumps(graph[shared_key], protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError):  # a closure: cloudpickled as a key
        return graph
    if len(pickled) * len(tasks) > INLINE_BYTES:
        return graph
    graph = dict(graph)
    del graph[shared_key]
    for key in tasks:
        task = graph[key]
        graph[key] = (*task[:3], _Pickled(pickled), *task[4:])
    return graph


class _Pickled:
    """Arguments pickled once (opaque to dask), for tasks that unpickle them."""

    def __init__(self, data: bytes):
        self.data = data


class _Plan(NamedTuple):
    groups: list  # (worker or None, the _Group or a reference to it on the cluster, the keys its task receives)
    inputs: dict  # the part of the chunks' graph the groups need
    cluster: bool  # for a cluster's client


def placement(n_chunks: int, workers: list, threads: dict, level: int = 0) -> list:
    """The worker of each of ``n_chunks`` chunks: consecutive chunks on each worker, in the
    order of ``workers``, as many as its share of the threads (``threads``: per worker),
    whole runs of ``2**level`` chunks on each (:func:`run_level`)."""
    weights = np.array([threads.get(w, 1) for w in workers], dtype=float)
    n_runs = (n_chunks + (1 << level) - 1) >> level
    bounds = np.round(np.cumsum(weights) / weights.sum() * n_runs).astype(int)
    run_worker = np.searchsorted(bounds, np.arange(n_runs), side="right")
    return [workers[run_worker[i >> level]] for i in range(n_chunks)]


def run_level(chunk_rows, n_features: int) -> int:
    """The level of the fixed tree (:func:`_tree_add`) whose nodes are the runs of chunks:
    0 (each chunk its own run) when the largest of ``chunk_rows`` holds
    :data:`RUN_VALUES` values or more, otherwise the least level whose ``2**level``
    consecutive chunks hold that many (or all of them)."""
    largest, level = max(chunk_rows, default=0) * max(n_features, 1), 0
    while largest and (largest << level) < RUN_VALUES and (1 << level) < len(chunk_rows):
        level += 1
    return level


def _split_runs(members: list, n_parts: int, level: int) -> list:
    """``members`` (chunk indices, ascending) in at most ``n_parts`` parts of consecutive
    ones, as even as whole runs allow (a run never split)."""
    if not members:
        return []
    nodes = np.asarray(members) >> level  # each member's run, ascending
    runs = np.unique(nodes)
    cuts = [part[0] for part in np.array_split(runs, min(len(runs), max(1, n_parts)))]
    starts = np.searchsorted(nodes, cuts).tolist() + [len(members)]
    return [members[a:b] for a, b in zip(starts[:-1], starts[1:])]


def persist(array: da.Array, n_features: int | None = None) -> da.Array:
    """The array computed and kept in memory: on a ``dask.distributed`` cluster, its chunks
    kept on the workers, consecutive row-chunks on the same worker, as many on each as its
    share of the threads and whole runs of small chunks on each (:func:`run_level`; then a
    pass adds each worker's chunks there and sends one partial sum per worker,
    :meth:`ChunkedData.map_reduce`); otherwise ``array.persist()``. ``n_features``: of the
    rows whose chunks these are (by default the array's columns), so that weights or labels
    go where their rows go."""
    client = distributed_client()
    if client is None:
        return array.persist()
    (optimized,) = dask.optimize(array)
    graph = dict(optimized.__dask_graph__())
    keys = list(dask.core.flatten(optimized.__dask_keys__()))
    threads = client.nthreads()
    workers = sorted(threads)
    if n_features is None:
        n_features = array.shape[1] if array.ndim > 1 else 1
    level = run_level(optimized.chunks[0], n_features)
    row_worker = placement(optimized.numblocks[0], workers, threads, level)
    futures = client.get(_placed(graph, {key: row_worker[key[1]] for key in keys}, []), keys, sync=False)
    return da.Array(dict(zip(keys, futures)), optimized.name, optimized.chunks, meta=optimized._meta)


def _placed(graph: dict, placed: dict, combined: list):
    """The pass's graph, with each group task (keys of ``placed``) asking for the worker that
    holds its chunks (any other may run it if that one is lost); ``combined``: the keys of
    the reduction."""
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    combine = {key: graph[key] for key in combined}
    groups = {key: graph[key] for key in placed}
    rest = {key: task for key, task in graph.items() if key not in combine and key not in groups}
    layers, dependencies = {"streamem-inputs": MaterializedLayer(rest)}, {"streamem-inputs": set()}
    by_worker: dict = {}
    for key, worker in placed.items():
        by_worker.setdefault(worker, {})[key] = groups[key]
    for n, (worker, tasks) in enumerate(by_worker.items()):
        annotations = None if worker is None else {"workers": (worker,), "allow_other_workers": True}
        layers[f"streamem-groups-{n}"] = MaterializedLayer(tasks, annotations=annotations)
        dependencies[f"streamem-groups-{n}"] = {"streamem-inputs"}
    layers["streamem-combine"] = MaterializedLayer(combine)
    dependencies["streamem-combine"] = set(layers) - {"streamem-combine"}
    return HighLevelGraph(layers, dependencies)


def redact(address: str) -> str:
    """An address without any user or password in it, for messages and logs."""
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.username is None and parts.password is None:
        return address
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()


def distributed_client():
    """The active ``dask.distributed`` client, or None (without importing distributed)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client, get_worker

    try:
        get_worker()
        return None  # inside a task on a worker: compute there, not through its cluster
    except ValueError:
        pass
    try:
        return default_client()
    except ValueError:
        return None


def _unreachable(client, timeout) -> TimeoutError:
    return TimeoutError(
        f"a pass over the data took longer than timeout={timeout} s: the dask scheduler at "
        f"{redact(client.scheduler.address)} may be unreachable"
    )


def compute_key(graph, key, timeout: float | None = None):
    """Compute one key of a task graph, on the distributed client if one is active.

    On a ``dask.distributed`` cluster a pass that takes longer than ``timeout`` seconds
    raises ``TimeoutError``, and losing the scheduler raises ``ConnectionError``: a fit
    never hangs on an unreachable cluster.
    """
    client = distributed_client()
    if client is None:
        get = dask.base.get_scheduler() or dask.threaded.get
        return get(graph, key)
    from distributed.client import FutureCancelledError

    try:
        return client.get(graph, key, sync=False).result(timeout=timeout)
    except TimeoutError:
        raise _unreachable(client, timeout) from None
    except FutureCancelledError as exc:
        raise ConnectionError(f"lost the connection to the dask scheduler during a pass: {exc}") from None


def apply_blocks(X: da.Array, func, *args, dtype, n_columns: int | None = None) -> da.Array:
    """Lazily apply a row-wise ``func(chunk, *args)`` to every row-chunk of ``X``.

    The result has one entry per row, or ``n_columns`` columns per row when given.
    """
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    if n_columns is None:
        return X.map_blocks(func, *args, dtype=dtype, drop_axis=1, meta=np.empty((0,), dtype=dtype))
    chunks = (X.chunks[0], (n_columns,))
    return X.map_blocks(func, *args, dtype=dtype, chunks=chunks, meta=np.empty((0, 0), dtype=dtype))


def default_chunk_rows(n_samples: int, n_features: int, itemsize: int) -> int:
    """Rows per chunk for in-memory arrays: a few chunks per core, at most ~64 MiB each."""
    n_cores = os.cpu_count() or 1
    max_rows = max(1, (64 << 20) // max(1, n_features * itemsize))
    rows = -(-n_samples // (2 * n_cores))
    return int(max(min(rows, max_rows), min(n_samples, 8192), 1))


def row_batches(X: da.Array, sample_weight: da.Array | None, batch_size: int, min_rows: int):
    """``(batch, weights)`` of ``batch_size`` rows, as numpy arrays, over a dask array with
    its columns in one chunk, reading one chunk at a time (the mini-batches of an online
    fit over a finite array); a last batch of fewer
    than ``min_rows`` rows joins the one before it."""
    held = None
    for batch in _slices(X, sample_weight, batch_size):
        if held is not None and len(batch[0]) < min_rows:
            x, w = held
            held = (np.concatenate([x, batch[0]]), None if w is None else np.concatenate([w, batch[1]]))
            continue
        if held is not None:
            yield held
        held = batch
    if held is not None:
        yield held


def _slices(X: da.Array, sample_weight: da.Array | None, batch_size: int):
    """Slices of ``batch_size`` rows, one chunk of X computed at a time (a remainder is
    carried into the next chunk)."""
    w_parts = None if sample_weight is None else sample_weight.rechunk((X.chunks[0],)).to_delayed()
    rest_x = rest_w = None
    for i, part in enumerate(X.to_delayed()[:, 0]):
        x = part.compute()
        w = None if w_parts is None else w_parts[i].compute()
        if rest_x is not None and len(rest_x):
            x = np.concatenate([rest_x, x])
            w = None if w is None else np.concatenate([rest_w, w])
        n_full = len(x) // batch_size * batch_size
        for start in range(0, n_full, batch_size):
            yield x[start : start + batch_size], None if w is None else w[start : start + batch_size]
        rest_x, rest_w = x[n_full:], None if w is None else w[n_full:]
    if rest_x is not None and len(rest_x):
        yield rest_x, rest_w


def from_numpy(X: np.ndarray) -> da.Array:
    """A dask view of an in-memory array, a few chunks per core."""
    rows = default_chunk_rows(X.shape[0], X.shape[1], X.dtype.itemsize)
    return da.from_array(X, chunks=(rows, X.shape[1]), asarray=False, name=False)
