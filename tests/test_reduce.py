"""Passes over the chunks: a few tasks per thread, one chunk in memory at a time per task."""

from __future__ import annotations

import operator
import random
import threading
import weakref

import dask
import dask.array as da
import numpy as np
import pytest

import streamem.engine.passes as passes
from streamem.engine.passes import (
    RUN_VALUES,
    TASKS_PER_THREAD,
    ChunkedData,
    _Shared,
    _tree_add,
    _tree_total,
    placement,
    run_level,
)

_live = {"now": 0, "most": 0}
_lock = threading.Lock()


def _tracked_chunk(block):
    """A chunk whose lifetime is counted."""
    out = np.ones_like(block)
    with _lock:
        _live["now"] += 1
        _live["most"] = max(_live["most"], _live["now"])
    weakref.finalize(out, _release)
    return out


def _release():
    with _lock:
        _live["now"] -= 1


def _row_count(X, sample_weight):
    return len(X)


def test_a_pass_over_many_chunks_is_a_few_tasks_with_one_chunk_at_a_time(monkeypatch):
    monkeypatch.setattr(passes, "RUN_VALUES", 0)  # every chunk a run of its own
    X = da.zeros((400 * 50, 3), chunks=(50, 3)).map_blocks(_tracked_chunk)
    data = ChunkedData(X)
    executed = []

    def count(key, result, dsk, state, worker_id):
        executed.append(key)

    _live.update(now=0, most=0)
    with dask.config.set(scheduler="synchronous", num_workers=2), dask.callbacks.Callback(posttask=count):
        total = data.map_reduce(_row_count)
    assert total == 400 * 50
    groups = [key for key in executed if "streamem-group" in str(key)]
    assert len(groups) == TASKS_PER_THREAD * 2  # not one task per chunk
    assert len(executed) < 20
    assert _live["most"] <= 2  # a group's chunks are read one after the other, not all at once


_calls: list = []


def _stacked_sum(X, sample_weight, labels=None):
    _calls.append((len(X), None if labels is None else len(labels)))
    return np.array([np.sum(X * X), len(X), np.sum(labels)])


@pytest.mark.parametrize("rows", [7, 50, 20_000])
def test_small_chunks_go_to_a_stacking_chunk_function_a_run_at_a_time(rows):
    """Chunks smaller than RUN_VALUES reach a ``stack`` pass's function a run of consecutive
    chunks at a time: fewer calls, the same total (up to rounding), the same bits on any
    number of threads; other passes still see one chunk at a time."""
    n_chunks, n_features = 300, 3
    X = da.random.default_rng(0).normal(size=(n_chunks * rows, n_features), chunks=(rows, n_features))
    labels = da.arange(n_chunks * rows, chunks=rows) % 5
    data = ChunkedData(X, labels=labels)
    level = run_level([rows] * n_chunks, n_features)
    assert data.level == level
    assert (level == 0) == (rows * n_features >= RUN_VALUES)
    assert level == 0 or (rows * n_features) << level >= RUN_VALUES or 1 << level >= n_chunks
    totals = []
    for threads in (1, 2, 3):
        _calls.clear()
        with dask.config.set(scheduler="threads", num_workers=threads):
            totals.append(data.map_reduce(_stacked_sum, with_labels=True, stack=True))
        n_runs = -(-n_chunks // (1 << level))
        assert len(_calls) == n_runs
        assert sorted(_calls)[-1] == (rows << level, rows << level) or n_runs == 1
    assert all(np.array_equal(totals[0], t) for t in totals[1:])  # bit for bit
    _calls.clear()
    one_at_a_time = data.map_reduce(_stacked_sum, with_labels=True)
    assert len(_calls) == n_chunks
    np.testing.assert_allclose(totals[0], one_at_a_time, rtol=1e-12)
    np.testing.assert_allclose(totals[0][1:], [n_chunks * rows, 2 * n_chunks * rows])


def test_placement_keeps_each_run_on_one_worker():
    workers = ["a", "b", "c"]
    for n_chunks in (1, 5, 37, 64):
        for level in (0, 1, 3):
            placed = placement(n_chunks, workers, {"a": 1, "b": 2, "c": 1}, level)
            assert len(placed) == n_chunks
            for i in range(n_chunks):
                assert placed[i] == placed[(i >> level) << level]  # a run's chunks with its first
            assert placed == sorted(placed)  # consecutive runs on each worker


def _where(X, sample_weight, start):
    from distributed import get_worker

    return {(start, get_worker().address)}


@pytest.mark.cluster
@pytest.mark.parametrize("placement", ["as dask placed them", "all on one worker"])
def test_chunks_kept_on_workers_are_spread_evenly_once(placement, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(passes, "RUN_VALUES", 0)  # every chunk a run of its own
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        X = da.from_array(np.arange(64 * 10 * 2, dtype=float).reshape(-1, 2), chunks=(10, 2))
        workers = sorted(client.nthreads())
        X = client.persist(X, workers=workers[:1]) if placement == "all on one worker" else X.persist()
        distributed.wait(X)
        data = ChunkedData(X)
        _, groups = data._groups()
        holders = client.who_has([data._graph[key] for key in data.x_keys])
        assert all(len(holders[key]) == 1 for key in data.x_keys)
        held = [holders[key][0] for key in data.x_keys]
        assert sorted(held.count(worker) for worker in workers) == [32, 32]  # beyond a worker's share: copied
        assert held[:32] == held[:1] * 32 and held[32:] == held[32:33] * 32  # each worker's chunks consecutive
        assert len(groups) == 2  # one task per worker thread
        assert all({held[i] for i in group} == {holder} for holder, group in groups)  # a group's chunks are together
        assert data._groups()[1] is groups  # once per cluster
        seen = data.map_reduce(_where, with_index=True, combine=set.union)
        assert sorted(start for start, _ in seen) == list(range(0, 640, 10))  # every chunk once
        assert [address for _, address in sorted(seen)] == held  # where it is kept: no transfer
        assert data.map_reduce(_row_count) == 640


def _fit_means(X):
    import streamem

    return streamem.GaussianMixture(2, random_state=0).fit(X).means_


@pytest.mark.cluster
def test_a_fit_inside_a_cluster_task_runs_on_that_worker(blobs):
    distributed = pytest.importorskip("distributed")
    X, _ = blobs
    expected = _fit_means(X)
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        means = client.submit(_fit_means, X).result(timeout=120)  # a single thread: no passes sent to the cluster
    np.testing.assert_allclose(means, expected, rtol=1e-10)


def _sum_of_rows(X, sample_weight):
    return X.sum(axis=0)


@pytest.mark.parametrize("n_chunks", [1, 2, 3, 7, 8, 13, 100])
def test_the_tree_gives_the_same_bits_in_any_order(n_chunks):
    """Float addition is not associative; the tree's sums are the same whatever order the
    chunks' results come in."""
    rng = np.random.default_rng(n_chunks)
    values = rng.normal(size=n_chunks) * 10.0 ** rng.integers(-12, 12, n_chunks)
    totals = set()
    for seed in range(30):
        order = list(range(n_chunks))
        random.Random(seed).shuffle(order)
        nodes = {}
        for i in order:
            _tree_add(nodes, 0, i, values[i], lambda a, b: a + b, n_chunks)
        totals.add(_tree_total(nodes))
    assert len(totals) == 1
    if n_chunks >= 7:  # while a left fold in another order does differ
        folds = {sum(values[random.Random(seed).sample(range(n_chunks), n_chunks)]) for seed in range(30)}
        assert len(folds) > 1


def test_a_pass_gives_the_same_bits_on_any_number_of_threads():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50_000, 3)) * 10.0 ** rng.integers(-6, 6, (50_000, 1))
    data = ChunkedData(da.from_array(X, chunks=(997, -1)))
    totals = []
    for threads in (1, 2, 3, 4, 7):
        with dask.config.set(scheduler="threads", num_workers=threads):
            totals.append(data.map_reduce(_sum_of_rows))
    for total in totals[1:]:
        np.testing.assert_array_equal(total, totals[0])


_prepared = []


def _prepare_counted(offset):
    with _lock:
        _prepared.append(threading.get_ident())
    return {"offset": np.full(1, offset)}


def _offset_rows(X, sample_weight, offset_value, offset):
    assert offset[0] == offset_value
    return len(X) + offset[0]


def test_prepare_runs_once_per_thread_of_a_pass():
    data = ChunkedData(da.zeros((300 * 20, 2), chunks=(20, 2)))
    for threads in (1, 2):
        _prepared.clear()
        with dask.config.set(scheduler="threads", num_workers=threads):
            total = data.map_reduce(_offset_rows, 3.0, prepare=_prepare_counted)
        assert total == 300 * 20 + 300 * 3.0  # every chunk got the prepared keywords
        assert len(_prepared) == len(set(_prepared)) <= threads  # once per thread, not per chunk


@pytest.mark.parametrize("n_chunks", [1, 5, 64, 1000])
def test_a_group_of_consecutive_chunks_sends_a_few_partial_sums(n_chunks):
    """A worker holding consecutive chunks sends the sums of a few subtrees of the fixed tree
    (at most two per level), not one per chunk."""
    from streamem.engine.passes import _Group

    for first, last in [(0, n_chunks), (n_chunks // 3, 2 * n_chunks // 3 + 1), (n_chunks - 1, n_chunks)]:
        members = list(range(first, last))
        group = _Group([(None, None, None, i) for i in members], [], members, n_chunks)
        nodes = group.run(lambda X, w, index: 1, operator.add, _Shared(()), False, [])
        assert sum(nodes.values()) == len(members)
        assert len(nodes) <= 2 * max(1, np.ceil(np.log2(n_chunks)))


def test_placement_puts_consecutive_chunks_on_each_worker_by_its_threads():
    workers = ["b", "a", "c"]
    placed = placement(10, workers, {"a": 2, "b": 1, "c": 2})
    assert placed == ["b", "b", "a", "a", "a", "a", "c", "c", "c", "c"]
    assert len(set(placement(3, ["a", "b", "c", "d"], {}))) == 3  # fewer chunks than workers: one each


def _scaled_rows(X, sample_weight, scale):
    return float(np.sum(X) * scale(1.0) if callable(scale) else np.sum(X) * scale[0])


@pytest.mark.cluster
@pytest.mark.parametrize("inline", [True, False], ids=["inside-each-task", "one-key-copied-between-workers"])
def test_shared_arguments_reach_every_worker_however_they_travel(monkeypatch, inline):
    distributed = pytest.importorskip("distributed")
    import streamem.engine.passes as passes

    if not inline:
        monkeypatch.setattr(passes, "INLINE_BYTES", 0)
    X = da.from_array(np.arange(40 * 10 * 2, dtype=float).reshape(-1, 2), chunks=(10, 2))
    expected = float(np.arange(800).sum()) * 3.0
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        data = ChunkedData(X)
        assert data.map_reduce(_scaled_rows, np.array([3.0])) == expected
        factor = 3.0
        assert data.map_reduce(_scaled_rows, lambda x: x * factor) == expected  # a closure: not pickled inline
