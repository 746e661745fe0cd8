"""The stream runner: read batches from a source, update an online model, checkpoint, acknowledge.

Exactly once: the model's state, its step counter and the source position of the last
record in the model are saved together in one checkpoint (a new directory, then an atomic
switch of the ``LATEST`` pointer, :mod:`streamem.data.checkpoint`), and only then is the source
told that those records are done. A process killed at any moment restarts from its last
checkpoint and reads the records after its position again, so the final model equals an
uninterrupted run's: no record is lost and none is counted twice.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import signal
import threading
import time

import numpy as np

from streamem.data.checkpoint import load_state, save_state
from streamem.data.storage import location
from streamem.data.store import check_model_path, publish_model
from streamem.models.online import OnlineGaussianMixture, Stepwise
from streamem.stream.drift import PageHinkley

__all__ = ["RunResult", "run"]

logger = logging.getLogger(__name__)

LAG_INTERVAL = 1.0  # seconds between measurements of the consumer lag (metrics only)

MATCHING = ("n_components", "covariance_type")
ON_DRIFT = (None, "reset-step")


@dataclasses.dataclass
class RunResult:
    """What a run did.

    Attributes
    ----------
    model : OnlineGaussianMixture or BayesianGaussianMixture
    batches : int
        Batches the model was updated with in this run.
    rows : int
        Rows in the model since the start of the stream (over every run).
    rejected : int
        Malformed records sent to the dead letters in this run.
    checkpoints : int
        Checkpoints written in this run.
    position : JSON value
        The source position of the last record in the model.
    stopped : str
        ``"idle"``, ``"signal"`` or ``"max_batches"``.
    drifts : list of int
        The batches (counted from the start of the stream) at which a drift alarm was raised
        in this run.
    detector : PageHinkley
        The drift test, its alarms counted over every run.
    """

    model: Stepwise
    batches: int = 0
    rows: int = 0
    rejected: int = 0
    checkpoints: int = 0
    position: object = None
    stopped: str = ""
    resumed: bool = False
    drifts: list = dataclasses.field(default_factory=list)
    detector: PageHinkley = dataclasses.field(default_factory=PageHinkley)


class _StopSignal:
    """SIGTERM and SIGINT ask the loop to stop after the current batch (main thread only)."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _labels_writer(path, storage_options=None):
    """Write each batch's labels into a 1-D int32 zarr array (local or any fsspec URL) at
    the rows' stream indices (idempotent: a batch read again after a restart writes the
    same rows)."""
    import zarr

    target = location(path, storage_options)
    if target.exists():
        array = zarr.open_array(target.zarr_store(read_only=False), mode="r+")
        if array.ndim != 1:
            raise ValueError(f"expected a 1-D labels array at {target.url!r}, got shape {array.shape}")
    else:
        array = zarr.create_array(
            target.zarr_store(read_only=False), shape=(0,), chunks=(65536,), dtype="i4", fill_value=-1
        )

    def write(start: int, X, labels: np.ndarray, position) -> None:
        stop = start + len(labels)
        if array.shape[0] < stop:
            array.resize((stop,))
        array[start:stop] = labels

    return write


def run(
    source,
    model: Stepwise | None = None,
    checkpoint=None,
    out=None,
    *,
    n_features: int | None = None,
    batch_size: int = 1000,
    checkpoint_every: int = 100,
    checkpoint_interval: float | None = 10.0,
    stop_after_idle: float | None = None,
    max_batches: int | None = None,
    labels=None,
    poll_timeout: float = 0.5,
    drift_threshold: float = 25.0,
    on_drift: str | None = None,
    metrics_port: int | None = None,
    health_timeout: float = 300.0,
    storage_options: dict | None = None,
) -> RunResult:
    """Fit ``model`` on a stream until it goes idle, is signalled, or ``max_batches``.

    Parameters
    ----------
    source : a source (:mod:`streamem.stream.sources`) or its URL
        A URL needs ``n_features``.
    model : OnlineGaussianMixture or BayesianGaussianMixture, default=None
        A model with ``partial_fit`` (default ``OnlineGaussianMixture()``): the
        hyper-parameters; with a checkpoint to resume from, its state is used instead (its
        class, ``n_components`` and ``covariance_type`` must match).
    checkpoint : path or URL, default=None
        Directory of the checkpoints. Run again with the same one to resume.
    out : path or URL, default=None
        The current model, published after every checkpoint (an atomic switch, so
        ``streamem.load(out)`` never sees a half-written model).
    n_features : int, default=None
    batch_size : int, default=1000
        Rows per update; whole records are never split, so a batch can end a record early.
        A batch is fed when it is full, whatever the pace of the stream (so a restarted run
        forms the same batches as an uninterrupted one); the rows left when the run stops
        for idleness form a last, smaller batch.
    checkpoint_every : int, default=100
        Batches between checkpoints.
    checkpoint_interval : float, default=10.0
        Seconds between checkpoints at most (None: by batches only).
    stop_after_idle : float, default=None
        Stop when no record came for this many seconds (None: never).
    max_batches : int, default=None
        Stop after this many batches in this run.
    labels : path or callable, default=None
        Each batch's labels: a zarr array written at the rows' stream indices, or
        ``labels(X, labels, position)``.
    poll_timeout : float, default=0.5
        Seconds one read waits for records.
    drift_threshold : float, default=25.0
        The Page-Hinkley threshold (:class:`~streamem.stream.drift.PageHinkley`, in standard
        deviations of the batches' mean log-likelihood under the model) of the drift
        alarms. An alarm is logged (a warning, with ``{"event": "drift", ...}`` for JSON
        logs) and counted in the checkpoint.
    on_drift : {None, "reset-step"}, default=None
        What an alarm does besides: ``"reset-step"`` starts the model's step sizes again
        (:meth:`~streamem.models.online.Stepwise.restart_steps`), so that it adapts as fast as at
        the start of the stream.
    metrics_port : int, default=None
        Serve Prometheus metrics (``/metrics``) and a health check (``/healthz``) on
        ``127.0.0.1:metrics_port`` during the run (:class:`~streamem.stream.metrics.StreamMetrics`).
    health_timeout : float, default=300.0
        Seconds without a successful checkpoint after which ``/healthz`` fails.
    storage_options : dict, default=None
        Options of the file system that the paths (``zarr:``/``dir:`` sources, checkpoint,
        ``out``, ``labels``) name when they are URLs (``s3://bucket/key``); by default the
        store's usual environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...) is used.

    Returns
    -------
    RunResult
    """
    if isinstance(source, str):
        from streamem.stream.sources import open_source

        if n_features is None:
            raise ValueError("expected n_features with a source URL")
        source = open_source(source, n_features, storage_options)
    for name, value in (("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"expected {name} >= 1, got {value!r}")
    if on_drift not in ON_DRIFT:
        raise ValueError(f"expected on_drift None or 'reset-step', got {on_drift!r}")
    if not drift_threshold > 0:
        raise ValueError(f"expected drift_threshold > 0, got {drift_threshold!r}")
    detector = PageHinkley(threshold=drift_threshold)
    checkpoint = None if checkpoint is None else location(checkpoint, storage_options)
    out = None if out is None else location(out, storage_options)
    if out is not None:
        check_model_path(out)
    model = OnlineGaussianMixture() if model is None else model
    result = RunResult(model, detector=detector)
    state = load_state(checkpoint) if checkpoint is not None else None
    if state is not None:
        arrays, attrs = state
        if "stream" not in attrs:
            raise ValueError(f"the checkpoint in {str(checkpoint)!r} is not a stream's")
        saved = attrs["stream"]["model"].get("estimator", "OnlineGaussianMixture")
        if saved != type(model).__name__:
            raise ValueError(
                f"the checkpoint in {str(checkpoint)!r} holds a model of class {saved}, got {type(model).__name__}; "
                "remove it or choose another checkpoint directory"
            )
        restored = type(model).from_state(arrays, attrs["stream"]["model"], str(checkpoint))
        for name in MATCHING:
            if getattr(restored, name) != getattr(model, name):
                raise ValueError(
                    f"the checkpoint in {str(checkpoint)!r} holds a model with {name}={getattr(restored, name)!r}, "
                    f"got {name}={getattr(model, name)!r}; remove it or choose another checkpoint directory"
                )
        model = result.model = restored
        result.position = attrs["stream"]["position"]
        result.rows = int(attrs["stream"]["rows"])
        if "drift" in attrs["stream"]:
            result.detector = PageHinkley.from_dict({**attrs["stream"]["drift"], "threshold": drift_threshold})
        result.resumed = True
        logger.info("resuming after position %s with %d rows in the model", result.position, result.rows)
    source.seek(result.position)
    write_labels = labels
    if isinstance(labels, (str, os.PathLike)):
        write_labels = _labels_writer(labels, storage_options)
    elif labels is not None:
        write_labels = lambda start, X, y, position: labels(X, y, position)  # noqa: E731
    metrics = None
    if metrics_port is not None:
        from streamem.stream.metrics import StreamMetrics

        metrics = StreamMetrics(metrics_port, health_timeout)
    runner = _Runner(source, model, checkpoint, out, result, write_labels, on_drift, metrics)
    try:
        with _StopSignal() as stop:
            runner.loop(
                stop, batch_size, checkpoint_every, checkpoint_interval, stop_after_idle, max_batches, poll_timeout
            )
        runner.checkpoint(wait=True)
    finally:
        runner.writer.shutdown(wait=True)
        source.close()
        if metrics is not None:
            metrics.close()
    logger.info(
        "stream stopped (%s): %d batches, %d rows in the model, %d rejected, %d checkpoints",
        result.stopped,
        result.batches,
        result.rows,
        result.rejected,
        result.checkpoints,
    )
    return result


class _Runner:
    def __init__(self, source, model, checkpoint, out, result: RunResult, write_labels, on_drift, metrics=None):
        self.source, self.model, self.checkpoint_dir, self.out = source, model, checkpoint, out
        self.result = result
        self.on_drift = on_drift
        self.metrics = metrics
        self.write_labels = write_labels
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.pending_position = None
        self.dirty = False
        self.since = 0
        self.last_checkpoint = time.monotonic()
        self.inflight = None
        self.unlabelled = []
        self.writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="streamem-checkpoint")

    def loop(self, stop, batch_size, checkpoint_every, checkpoint_interval, stop_after_idle, max_batches, poll):
        result = self.result
        idle_since = time.monotonic()
        lag_measured = -np.inf
        while True:
            if stop.received:
                result.stopped = "signal"
                logger.info("%s received: checkpointing and stopping", stop.received)
                return
            if max_batches is not None and result.batches >= max_batches:
                result.stopped = "max_batches"
                return
            self.collect()
            got = self.source.read(batch_size - self.pending_rows, timeout=poll)
            now = time.monotonic()
            if self.metrics is not None and now - lag_measured >= LAG_INTERVAL:
                lag_measured = now
                self.measure_lag()
            if got is None:
                if stop_after_idle is not None and now - idle_since >= stop_after_idle:
                    if self.pending_rows >= self.model.n_components:
                        self.feed()  # the last rows, fewer than a batch
                    result.stopped = "idle"
                    return
            else:
                idle_since = now
                result.rejected += got.rejected
                if self.metrics is not None:
                    self.metrics.read(len(got.X), got.rejected)
                if len(got.X):
                    self.pending.append(got.X)
                    self.pending_rows += len(got.X)
                    self.pending_position = got.position
                elif self.pending:
                    self.pending_position = got.position
                else:  # only malformed records: they are done with
                    result.position = got.position
                    self.dirty = True
                if self.pending_rows >= batch_size:
                    self.feed()
            due = self.since >= checkpoint_every or (
                checkpoint_interval is not None and now - self.last_checkpoint >= checkpoint_interval
            )
            if due and self.dirty:
                self.checkpoint()

    def measure_lag(self) -> None:
        """The source's consumer lag, for the metrics (asked in the runner's thread, as the
        clients of the brokers are not shared between threads)."""
        try:
            self.metrics.lag(self.source.lag())
        except Exception as exc:  # a broker that cannot tell now: the gauge keeps its last value
            logger.debug("consumer lag not measured: %s", exc)

    def feed(self) -> None:
        X = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        stepping = self.model.initialised  # not a warm-up batch
        self.model.partial_fit(X)
        if self.write_labels is not None:
            self.unlabelled.append((self.result.rows, X, self.pending_position))
            if self.model.initialised:  # warm-up batches get their labels once the model exists
                for start, rows, position in self.unlabelled:
                    self.write_labels(start, rows, self.model.predict(rows), position)
                self.unlabelled = []
        self.result.rows += len(X)
        self.result.batches += 1
        if stepping:
            self.watch_drift()
        if self.metrics is not None:
            self.metrics.batch(self.model.batch_log_likelihood_ if stepping else None)
        self.result.position = self.pending_position
        self.pending, self.pending_rows, self.pending_position = [], 0, None
        self.dirty = True
        self.since += 1

    def watch_drift(self) -> None:
        """Feed the batch's mean log-likelihood under the model to the drift test."""
        value = self.model.batch_log_likelihood_
        detector = self.result.detector
        if not detector.update(value):
            return
        batch = self.model.n_batches_
        self.result.drifts.append(batch)
        logger.warning(
            "drift: batch %d has mean log-likelihood %.6g under the model (alarm %d)%s",
            batch,
            value,
            detector.alarms,
            "; step sizes restarted" if self.on_drift == "reset-step" else "",
            extra={
                "streamem": {
                    "event": "drift",
                    "batch": batch,
                    "log_likelihood": value,
                    "alarms": detector.alarms,
                    "rows": self.result.rows,
                    "action": self.on_drift,
                }
            },
        )
        if self.on_drift == "reset-step":
            self.model.restart_steps()
        if self.metrics is not None:
            self.metrics.drift()

    def checkpoint(self, wait: bool = False) -> None:
        """Save the model with the position and publish it, in a background thread while
        the next batches are read; the source is acknowledged once the checkpoint is on
        disk (:meth:`collect`). One checkpoint is written at a time."""
        self.collect(block=wait)
        if self.inflight is not None:
            return  # the previous one is still being written: try again after the next batch
        self.last_checkpoint = time.monotonic()
        if not self.dirty or self.checkpoint_dir is None and self.out is None:
            return
        if not self.model.initialised:
            logger.info("the model is still warming up: nothing to checkpoint yet")
            return
        arrays, attrs = self.model.state()  # new arrays at every update: a consistent snapshot
        position = self.result.position
        stream = {
            "model": attrs,
            "position": position,
            "rows": self.result.rows,
            "drift": self.result.detector.to_dict(),
        }
        self.inflight = (self.writer.submit(self._write, self.model.n_batches_, arrays, attrs, stream), position)
        self.dirty = False
        self.since = 0
        if wait:
            self.collect(block=True)

    def _write(self, step, arrays, attrs, stream) -> None:
        if self.checkpoint_dir is not None:
            save_state(self.checkpoint_dir, step, arrays, {"stream": stream}, pack=True)
        if self.out is not None:
            publish_model(self.out, arrays, attrs)

    def collect(self, block: bool = False) -> None:
        """Acknowledge the source for a checkpoint written (re-raising a failure to write it)."""
        if self.inflight is None or not (block or self.inflight[0].done()):
            return
        future, position = self.inflight
        self.inflight = None
        future.result()
        if self.metrics is not None:
            self.metrics.checkpointed()
        if self.checkpoint_dir is not None:
            self.result.checkpoints += 1
            if position is not None:
                self.source.ack(position)
