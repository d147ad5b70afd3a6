"""The embedded cluster of `azlift bulk run`: it listens on nothing it does not need.

Dask's scheduler and workers always start an HTTP server (health, metrics, the dashboard
when Bokeh is installed), by default on every interface. The embedded run needs none of it:
with threads (the default) the scheduler and its worker talk in process (``inproc://``) and
no HTTP server starts at all, so the run opens no listening socket; with a worker process
they talk over 127.0.0.1 and the HTTP servers listen on 127.0.0.1 only.
Imports Dask at import time: loaded only when an embedded engine is built.
"""
from __future__ import annotations

import socket
from typing import Any

from distributed import LocalCluster, Scheduler, SpecCluster, Worker
from distributed.http.routing import RoutingApplication

from .engine import LOOPBACK_ANY_PORT

LOG_LEVEL = 40  # errors only: Dask's INFO lines are not the user's business


class _NoHttpServer:
    """A Dask node without its HTTP server (an empty application keeps shutdown happy)."""

    def start_http_server(self, routes: Any, dashboard_address: Any, default_port: int = 0,
                          ssl_options: Any = None) -> None:
        self.http_application = RoutingApplication([])


class QuietScheduler(_NoHttpServer, Scheduler):
    """A scheduler that opens no HTTP port."""


class QuietWorker(_NoHttpServer, Worker):
    """A worker that opens no HTTP port."""


def embedded_cluster(threads: int, resources: dict[str, float], processes: bool) -> Any:
    """One worker with ``threads`` task threads and the sources as its resources."""
    if processes:
        return LocalCluster(
            n_workers=1, threads_per_worker=threads, processes=True, resources=resources,
            host="127.0.0.1", scheduler_port=0, dashboard_address=LOOPBACK_ANY_PORT,
            worker_dashboard_address=LOOPBACK_ANY_PORT, silence_logs=LOG_LEVEL)
    scheduler = {"cls": QuietScheduler, "options": {
        "protocol": "inproc://", "dashboard": False, "dashboard_address": None}}
    worker = {"cls": QuietWorker, "options": {
        "name": socket.gethostname(),  # the report's "worker": the machine that ran the run
        "protocol": "inproc://", "nthreads": threads, "resources": resources,
        "dashboard": False, "memory_limit": 0}}
    return SpecCluster(scheduler=scheduler, workers={0: worker}, silence_logs=LOG_LEVEL,
                       name="azlift-bulk")
