"""The CLI's view of the settings: :mod:`dataflows.settings` is the one settings class."""

from dataflows.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
