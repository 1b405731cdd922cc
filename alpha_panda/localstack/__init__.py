"""The local stack: a Kafka-API broker, Redis and Postgres as real processes under one data directory.

:mod:`~alpha_panda.localstack.state` writes its files, :mod:`~alpha_panda.localstack.processes`
runs detached processes with pid files, :mod:`~alpha_panda.localstack.launch` says how each
server is run, :mod:`~alpha_panda.localstack.servers` starts and stops the three
(:class:`LocalStack`). Reading the recorded URLs back is
:mod:`connectors.localstack`; probing a server is :mod:`connectors.probes`.
"""

from alpha_panda.localstack.processes import ManagedProcess, ProcessStatus, child_env, free_port, port_is_free
from alpha_panda.localstack.servers import LocalStack, ephemeral_servers
from alpha_panda.localstack.state import UNPRIVILEGED_USER

__all__ = [
    "UNPRIVILEGED_USER",
    "LocalStack",
    "ManagedProcess",
    "ProcessStatus",
    "child_env",
    "ephemeral_servers",
    "free_port",
    "port_is_free",
]
