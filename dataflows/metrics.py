"""Prometheus counters every dataflow moves; exposed by ``serve_metrics``."""

from __future__ import annotations

from prometheus_client import Counter, start_http_server

DLQ_MESSAGES = Counter(
    "alpha_panda_dlq_messages",
    "Messages sent to a dead-letter topic",
    ["topic", "broker", "error_type"],
)
EVENTS_OUT = Counter(
    "alpha_panda_events",
    "Events published, by topic",
    ["topic"],
)
RETRIES = Counter(
    "alpha_panda_retries",
    "Retried writes to Redis, Postgres or a broker API, by error class",
    ["error_type"],
)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host``:``port``; port 0 means do not serve.

    ``host`` defaults to loopback (prometheus_client's own default is every
    interface); set ``METRICS_HOST`` to expose it, e.g. ``0.0.0.0`` in a pod.
    """
    if port:
        start_http_server(port, addr=host)
