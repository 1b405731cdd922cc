"""The daily Kite access token as a secret file: ``DATA_DIR/secrets/kite_access_token`` (mode 0600).

Kite access tokens expire every day at about 06:00 IST (regulatory daily
logout); ``alpha-panda kite login`` stores a fresh one, and settings read
it when ``KITE_ACCESS_TOKEN`` is not set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from connectors.kite.errors import KiteError

TOKEN_FILE: Final = Path("secrets") / "kite_access_token"


def token_path(data_dir: Path) -> Path:
    """Where the access token of ``data_dir`` lives."""
    return data_dir / TOKEN_FILE


def store_access_token(data_dir: Path, token: SecretStr) -> Path:
    """Write ``token`` to :func:`token_path` (directory 0700, file 0600, replaced atomically)."""
    path = token_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    scratch = path.with_suffix(".tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, token.get_secret_value().encode())
    finally:
        os.close(fd)
    os.chmod(scratch, 0o600)
    os.replace(scratch, path)
    return path


def load_access_token(data_dir: Path) -> SecretStr | None:
    """The stored token, or None when there is none.

    Raises:
        KiteError: the file is readable by others (not 0600).
    """
    path = token_path(data_dir)
    if not path.is_file():
        return None
    if path.stat().st_mode & 0o077:
        msg = f"kite access token file {path} is readable by group or others; chmod 600 it"
        raise KiteError(msg)
    text = path.read_text("utf-8").strip()
    return SecretStr(text) if text else None
