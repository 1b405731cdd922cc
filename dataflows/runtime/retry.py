"""The retry policies of the settings (``RETRY_*``), for sinks and broker calls."""

from __future__ import annotations

from dataflows.settings import Settings
from operators.failures import RetryConfig


def retry_config(settings: Settings) -> RetryConfig:
    """The retry policies of ``settings`` (``RETRY_*``)."""
    return RetryConfig.from_settings(
        max_attempts_transient=settings.retry_max_attempts_transient,
        base_s=settings.retry_base_s,
        max_s=settings.retry_max_s,
        budget_s=settings.retry_budget_s,
    )
