"""Run a dataflow as one process of a multi-process Bytewax cluster (a StatefulSet pod).

``python -m alpha_panda.cluster run dataflows.X [bytewax args...]`` turns the
pod's name (``<set>-<ordinal>``) and the headless Service into Bytewax's
process id and address list, then execs
``python -m bytewax.run dataflows.X -i <ordinal> -a "<set>-0.<svc>...:<port>;..." [args...]``.

``python -m alpha_panda.cluster init-recovery DIR`` creates this process's
recovery partition in ``DIR`` (partition ``<ordinal>`` of ``<processes>``)
unless one is there already. Each pod keeps its own partition on its own
volume; the cluster as a whole holds every partition, as Bytewax requires.

Environment (set by the StatefulSet):
- ``POD_NAME``: ``<statefulset>-<ordinal>``; its last ``-`` part is the ordinal;
- ``CLUSTER_PROCESSES``: the number of processes (the StatefulSet's replicas);
- ``CLUSTER_NAMESPACE``: the pod's namespace; ``CLUSTER_SERVICE``: the headless
  Service (default: the StatefulSet's name, as this project's manifests name it);
- ``CLUSTER_PORT``: the port Bytewax processes talk on (default 2101);
- ``CLUSTER_ADDRESSES``: overrides the computed list (``host:port;...``), e.g.
  to run a cluster on loopback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import AlphaPandaError

DEFAULT_PORT = 2101


class ClusterConfigError(AlphaPandaError):
    """The pod's cluster settings are missing or inconsistent."""


@dataclass(frozen=True)
class ClusterPlace:
    """Where this process sits in its cluster: its id and every process's address."""

    process_id: int
    addresses: tuple[str, ...]

    @property
    def processes(self) -> int:
        """Number of processes in the cluster."""
        return len(self.addresses)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        msg = f"cluster: {name} is not set"
        raise ClusterConfigError(msg)
    return value


def ordinal_of(pod_name: str) -> tuple[str, int]:
    """Split ``<statefulset>-<ordinal>`` into its set name and ordinal."""
    stem, _, tail = pod_name.rpartition("-")
    if not stem or not tail.isdigit():
        msg = f"cluster: POD_NAME {pod_name!r} is not <statefulset>-<ordinal>"
        raise ClusterConfigError(msg)
    return stem, int(tail)


def place_from_env(env: Mapping[str, str]) -> ClusterPlace:
    """Return this process's id and the cluster's addresses from the pod environment."""
    set_name, ordinal = ordinal_of(_required(env, "POD_NAME"))
    explicit = env.get("CLUSTER_ADDRESSES", "").strip()
    if explicit:
        addresses = tuple(part.strip() for part in explicit.split(";") if part.strip())
    else:
        raw = _required(env, "CLUSTER_PROCESSES")
        if not raw.isdigit() or int(raw) < 1:
            msg = f"cluster: CLUSTER_PROCESSES must be a positive integer, got {raw!r}"
            raise ClusterConfigError(msg)
        service = env.get("CLUSTER_SERVICE", "").strip() or set_name
        namespace = _required(env, "CLUSTER_NAMESPACE")
        port = env.get("CLUSTER_PORT", "").strip() or str(DEFAULT_PORT)
        addresses = tuple(
            f"{set_name}-{n}.{service}.{namespace}.svc.cluster.local:{port}" for n in range(int(raw))
        )
    if ordinal >= len(addresses):
        msg = (
            f"cluster: {env['POD_NAME']} is ordinal {ordinal} but the cluster has {len(addresses)} processes"
        )
        raise ClusterConfigError(msg)
    return ClusterPlace(ordinal, addresses)


def bytewax_command(module: str, place: ClusterPlace, extra: Sequence[str]) -> list[str]:
    """The ``python -m bytewax.run`` command line for ``module`` at ``place``."""
    return [
        sys.executable,
        "-m",
        "bytewax.run",
        module,
        "-i",
        str(place.process_id),
        "-a",
        ";".join(place.addresses),
        *extra,
    ]


def _partition_meta(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT part_index, part_count FROM parts").fetchone()
    if row is None:
        msg = f"cluster: recovery partition {path} has no metadata"
        raise ClusterConfigError(msg)
    return int(row[0]), int(row[1])


def init_recovery(directory: Path, place: ClusterPlace) -> str:
    """Create partition ``process_id`` of ``processes`` in ``directory`` unless one exists.

    Returns what it did, for the log. An existing partition for another
    cluster size is an error: Bytewax cannot resume it, and rescaling a flow
    means starting it from fresh partitions (see the README's Deploy section).
    """
    from bytewax.recovery import init_db_dir  # only this command needs bytewax

    directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(directory.glob("part-*.sqlite3"))
    if existing:
        metas = {_partition_meta(path) for path in existing}
        wanted = (place.process_id, place.processes)
        if metas != {wanted}:
            found = ", ".join(f"{index} of {count}" for index, count in sorted(metas))
            msg = (
                f"cluster: {directory} holds recovery partition(s) {found}, but this process needs "
                f"partition {wanted[0]} of {wanted[1]}; a cluster resized needs fresh recovery volumes"
            )
            raise ClusterConfigError(msg)
        return f"recovery partition {wanted[0]} of {wanted[1]} already in {directory}"
    with tempfile.TemporaryDirectory(dir=directory, prefix=".init-") as scratch:
        init_db_dir(Path(scratch), place.processes)
        name = f"part-{place.process_id}.sqlite3"
        shutil.move(str(Path(scratch) / name), str(directory / name))
    return f"created recovery partition {place.process_id} of {place.processes} in {directory}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m alpha_panda.cluster``."""
    parser = argparse.ArgumentParser(prog="python -m alpha_panda.cluster", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="exec bytewax.run for MODULE as this pod's cluster process")
    run.add_argument("module", help="dataflow module, e.g. dataflows.pipeline")
    run.add_argument("bytewax_args", nargs=argparse.REMAINDER, help="passed on to bytewax.run")
    init = commands.add_parser("init-recovery", help="create this process's recovery partition")
    init.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    try:
        place = place_from_env(os.environ)
        if args.command == "init-recovery":
            print(init_recovery(args.directory, place), flush=True)  # the command's output
            return 0
    except ClusterConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    extra = [a for a in args.bytewax_args if a != "--"]
    command = bytewax_command(args.module, place, extra)
    print("exec " + " ".join(command[1:]), flush=True)
    os.execv(sys.executable, command)  # noqa: S606 - replaces this process by the flow
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
