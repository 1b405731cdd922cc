"""The local stack's files: its private directories, passwords and ``stack.json`` (written here).

Reading them back, without starting anything, is :class:`connectors.localstack.StackFiles`.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from connectors.localstack import POSTGRES, REDIS, StackFiles

log = logging.getLogger("alpha_panda.localstack")

UNPRIVILEGED_USER: Final = "nobody"
"""Postgres refuses to run as root; as root the stack runs it as this user."""


class StackState(StackFiles):
    """The files of one data directory: ``stack.json``, ``secrets.json``, ``logs/``, ``run/``."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.logs_dir = self.data_dir / "logs"
        self.run_dir = self.data_dir / "run"

    def log_path(self, name: str) -> Path:
        """Return the log file of process ``name``."""
        return self.logs_dir / f"{name}.log"

    def _private_dirs(self) -> None:
        """Create ``data_dir`` 0700 (0710 for the Postgres user's group as root), logs and run 0700."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _make_traversable(self.data_dir)
            os.chown(self.data_dir, 0, pwd.getpwnam(UNPRIVILEGED_USER).pw_gid)
            self.data_dir.chmod(0o710)
        else:
            self.data_dir.chmod(0o700)
        for directory in (self.logs_dir, self.run_dir):
            directory.mkdir(exist_ok=True)
            directory.chmod(0o700)

    def passwords(self) -> dict[str, str]:
        """The local servers' passwords, generated (and stored 0600) on first use.

        A ``secrets.json`` written beforehand is used as it is, so a
        deployment may choose its own passwords.

        Raises:
            StackError: the file exists but is not a JSON object of strings.
        """
        path = self.secrets_file
        if not path.exists():
            self._private_dirs()
            chosen = {REDIS: secrets.token_urlsafe(24), POSTGRES: secrets.token_urlsafe(24)}
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process won the race; read what it wrote
            else:
                with os.fdopen(fd, "w") as handle:
                    json.dump(chosen, handle)
        if path.stat().st_mode & 0o077:
            log.warning("%s was readable by others; setting it to 0600", path)
            path.chmod(0o600)
        return super().passwords()

    def _write_state(self, state: Mapping[str, Any]) -> None:
        self._private_dirs()
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def _remember_external(self, name: str, url: str) -> None:
        """Keep an external server's full URL in ``secrets.json`` (0600) for later commands."""
        self.passwords()  # creates the file, 0600, if it is not there yet
        stored = self._read_secrets()
        external = stored.setdefault("external", {})
        if external.get(name) == url:
            return
        external[name] = url
        tmp = self.secrets_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle)
        tmp.replace(self.secrets_file)


def _make_traversable(path: Path) -> None:
    """Let other users pass through every directory above ``path`` (adds o+x only)."""
    for parent in path.absolute().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("adding o+x to %s so the Postgres user can reach its data", parent)
            parent.chmod(mode | stat.S_IXOTH)
