"""Worker metrics (issue 10): Dramatiq's Prometheus middleware, served from a thread of a worker process.

Dramatiq's CLI would fork an exposition server; the studio runs its worker processes itself, so the
first worker process on a host to bind ``worker_metrics_port`` serves the multiprocess files of all of
them (the others retry the port every few seconds, taking over if that one dies). Off unless the port
is set; only worker processes install it (the app's broker never carries it).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from http.server import HTTPServer
from pathlib import Path
from typing import Any

import dramatiq
import dramatiq.middleware.prometheus as dramatiq_prometheus
import prometheus_client.values

from core.config import Settings

_logger = logging.getLogger("studio.workers.metrics")
_PORT_RETRY_S = 5


class WorkerMetrics(dramatiq_prometheus.Prometheus):
    """Does nothing until ``process_boot``, which only worker processes emit."""

    booted = False

    def __init__(self, directory: Path, address: tuple[str, int]) -> None:
        super().__init__()
        self.directory = directory
        self.address = address

    @property
    def forks(self) -> list[Any]:
        return []

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.directory)
        # prometheus_client picks its value store at import: switch to files if it came in earlier.
        prometheus_client.values.ValueClass = prometheus_client.values.get_value_class()
        super().after_process_boot(broker)
        self.booted = True
        threading.Thread(target=self._serve, name="worker-metrics", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                server = HTTPServer(self.address, dramatiq_prometheus._metrics_handler)
            except OSError:
                time.sleep(_PORT_RETRY_S)  # another worker process of this host serves them
                continue
            _logger.info("worker metrics on http://%s:%d/metrics", *self.address)
            server.serve_forever()

    def __getattribute__(self, name: str) -> Any:
        # Message hooks need the metrics made at process boot; before it they are no-ops.
        if name.startswith(("after_", "before_")) and name != "after_process_boot" \
                and not object.__getattribute__(self, "booted"):
            return lambda *args, **kwargs: None
        return object.__getattribute__(self, name)


def worker_metrics_middleware(settings: Settings) -> WorkerMetrics:
    directory = settings.worker_metrics_dir or settings.data_dir / "worker-metrics"
    directory.mkdir(parents=True, exist_ok=True)
    dramatiq_prometheus.DB_PATH = str(directory)  # the module reads it at call time
    return WorkerMetrics(directory, (settings.worker_metrics_host, settings.worker_metrics_port))


def install_worker_metrics(broker: dramatiq.Broker, settings: Settings) -> None:
    """Add the metrics middleware to a worker's broker when ``worker_metrics_port`` is set."""
    if settings.worker_metrics_port > 0:
        broker.add_middleware(worker_metrics_middleware(settings))
