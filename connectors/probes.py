"""Readiness probes: does a Kafka-API broker, Redis or Postgres answer at this address?

Each returns when the server answers and raises the driver's error
otherwise; callers retry and report (redact URLs before printing them).
"""

from __future__ import annotations

import socket

import psycopg
import redis
from confluent_kafka.admin import AdminClient

from connectors.kafka.config import kafka_config


def probe_kafka(bootstrap: str) -> None:
    """Return when the broker at ``bootstrap`` answers a metadata request; raise otherwise."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=1):
        pass
    AdminClient(kafka_config(bootstrap)).list_topics(timeout=2)


def probe_redis(url: str) -> None:
    """Return when Redis at ``url`` answers PING; raise otherwise."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def probe_postgres(url: str) -> None:
    """Return when Postgres at ``url`` accepts a session; raise otherwise."""
    with psycopg.connect(url, connect_timeout=2) as conn:
        conn.execute("SELECT 1")
