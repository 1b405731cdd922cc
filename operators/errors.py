"""Errors raised by operators; all descend from :class:`AlphaPandaError`."""

from __future__ import annotations

from schemas.errors import AlphaPandaError


class OperatorError(AlphaPandaError):
    """Root of errors raised by trading logic in :mod:`operators`."""


class ConfigError(OperatorError):
    """A configuration value is missing, of the wrong type or out of range.

    The message names the owner (config class or strategy id), the parameter
    and the offending value, e.g.
    ``MomentumConfig.lookback_period must be an integer >= 2, got 0``.
    """
