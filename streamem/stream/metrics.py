"""Metrics of a stream job for operators: Prometheus counters and gauges and a health check,
served over HTTP on loopback while the stream runner works.

``/metrics`` (Prometheus' text format, through ``prometheus_client``, a registry of the job's
own) counts the records read and rejected, the batches and the checkpoints, and shows the
rows per second over the last minute, the consumer lag where the source reports one (the
records not read yet), the seconds since the last checkpoint, the mean log-likelihood of
the last batch under the model and the drift alarms. ``/healthz`` answers
200 while a checkpoint succeeded within ``health_timeout`` seconds (or the job started less
than that ago), 503 otherwise: a job that reads but cannot save its state is not healthy.
Needs the ``metrics`` extra (``pip install 'streamem[metrics]'``).
"""

from __future__ import annotations

import collections
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = ["StreamMetrics"]

RATE_WINDOW = 60.0  # seconds over which records/s is measured


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002  (the base class's name)
        pass


class _Server(WSGIServer):
    daemon_threads = True


class StreamMetrics:
    """The metrics of one stream run, served on ``127.0.0.1:port`` (0: a free port) until
    :meth:`close`.

    Parameters
    ----------
    port : int
    health_timeout : float, default=300.0
        Seconds without a successful checkpoint after which ``/healthz`` fails.
    host : str, default="127.0.0.1"
    """

    def __init__(self, port: int, health_timeout: float = 300.0, host: str = "127.0.0.1"):
        try:
            import prometheus_client as prometheus
        except ImportError:
            raise ImportError("--metrics-port needs prometheus-client: pip install 'streamem[metrics]'") from None
        if not health_timeout > 0:
            raise ValueError(f"expected health_timeout > 0, got {health_timeout!r}")
        self.health_timeout = float(health_timeout)
        self.started = time.monotonic()
        self.last_checkpoint: float | None = None
        self._recent: collections.deque = collections.deque()  # (time, rows) of the last RATE_WINDOW seconds
        self._lock = threading.Lock()
        self.registry = registry = prometheus.CollectorRegistry()
        self.records = prometheus.Counter("streamem_records_read", "Rows read from the source", registry=registry)
        self.rejected = prometheus.Counter(
            "streamem_records_rejected", "Malformed records sent to the dead letters", registry=registry
        )
        self.batches = prometheus.Counter("streamem_batches", "Batches the model was updated with", registry=registry)
        self.checkpoints = prometheus.Counter("streamem_checkpoints", "Checkpoints written", registry=registry)
        self.drift_alarms = prometheus.Counter("streamem_drift_alarms", "Drift alarms raised", registry=registry)
        self.consumer_lag = prometheus.Gauge(
            "streamem_consumer_lag",
            "Records in the source after the last one read, as the broker reports "
            "them (Redis group lag, Kafka watermarks, JetStream pending, zarr rows)",
            registry=registry,
        )
        self.log_likelihood = prometheus.Gauge(
            "streamem_batch_log_likelihood", "Mean log-likelihood of the last batch under the model", registry=registry
        )
        prometheus.Gauge(
            "streamem_records_per_second", f"Rows read per second over the last {RATE_WINDOW:.0f} s", registry=registry
        ).set_function(self._rate)
        prometheus.Gauge(
            "streamem_seconds_since_checkpoint", "Seconds since the last checkpoint (or the start)", registry=registry
        ).set_function(self._since_checkpoint)
        metrics_app = prometheus.make_wsgi_app(registry)

        def app(environ, start_response):
            if environ.get("PATH_INFO") == "/healthz":
                healthy = self.healthy()
                status = "200 OK" if healthy else "503 Service Unavailable"
                start_response(status, [("Content-Type", "text/plain")])
                return [b"ok\n" if healthy else b"no checkpoint within the health timeout\n"]
            return metrics_app(environ, start_response)

        self._server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="streamem-metrics", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ updates

    def read(self, rows: int, rejected: int) -> None:
        now = time.monotonic()
        self.records.inc(rows)
        self.rejected.inc(rejected)
        with self._lock:
            self._recent.append((now, rows))

    def batch(self, log_likelihood: float | None) -> None:
        self.batches.inc()
        if log_likelihood is not None:
            self.log_likelihood.set(log_likelihood)

    def checkpointed(self) -> None:
        self.checkpoints.inc()
        self.last_checkpoint = time.monotonic()

    def drift(self) -> None:
        self.drift_alarms.inc()

    def lag(self, records: int | None) -> None:
        if records is not None:
            self.consumer_lag.set(records)

    # ------------------------------------------------------------- values

    def _rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - RATE_WINDOW:
                self._recent.popleft()
            rows = sum(n for _, n in self._recent)
        return rows / min(RATE_WINDOW, max(now - self.started, 1e-9))

    def _since_checkpoint(self) -> float:
        return time.monotonic() - (self.started if self.last_checkpoint is None else self.last_checkpoint)

    def healthy(self) -> bool:
        """Whether a checkpoint succeeded within ``health_timeout`` (or the run is younger)."""
        return self._since_checkpoint() <= self.health_timeout

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
