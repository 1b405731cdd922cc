"""One module per scenario group; each exposes ``<name>_scenario(config, log) -> rows``."""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]
"""Where a scenario reports progress (one line at a time)."""
