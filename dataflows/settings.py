"""Typed, frozen settings read once from the environment: the one settings class.

Only ``dataflows/`` and the CLI (through its re-export
``alpha_panda.settings``) import this module. Secrets are ``SecretStr`` so
they never print: ``repr(settings)`` shows ``'**********'``.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

from connectors.marketdata.backfill import Speed, parse_speed
from connectors.marketdata.errors import MarketDataError
from schemas.envelope import as_utc
from schemas.topics import BROKERS

FeedSourceName = Literal["simulator", "file", "kite", "alpaca", "postgres"]
Channel = Literal["trades", "quotes", "bars"]


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """Everything a dataflow or the CLI may be configured with.

    Names are the upper-cased field names (``KAFKA_BOOTSTRAP_SERVERS``...).
    An empty URL means "use the local stack's server".
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_file=None)

    kafka_bootstrap_servers: str = ""
    redis_url: SecretStr = SecretStr("")
    postgres_url: SecretStr = SecretStr("")

    # Kafka client security, passed to every producer, consumer and admin
    # client (librdkafka names: security.protocol, sasl.*, ssl.*). Empty
    # means librdkafka's default (PLAINTEXT, no SASL).
    kafka_security_protocol: str = ""
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_location: str = ""
    kafka_ssl_certificate_location: str = ""
    kafka_ssl_key_location: str = ""
    kafka_ssl_key_password: SecretStr = SecretStr("")
    kafka_ssl_endpoint_identification_algorithm: str = ""
    # How long a flow's Kafka sink waits for a broker to acknowledge a message
    # (librdkafka retries meanwhile); after it, the flow stops and recovery
    # resumes it from its last snapshot.
    kafka_delivery_timeout_ms: int = Field(default=60_000, ge=1_000)
    active_brokers: Annotated[tuple[str, ...], NoDecode] = BROKERS

    data_dir: Path = Path(".alpha-panda")
    service_name: str = "alpha-panda"

    # Topics (created by `alpha-panda up` / the admin helper).
    topic_partitions: int = Field(default=4, ge=1)
    topic_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)

    # Risk limits (per broker and strategy).
    max_position_size: int = Field(default=1000, ge=1)
    max_daily_trades: int = Field(default=50, ge=1)
    max_price_deviation: float = Field(default=0.10, gt=0)

    # Execution.
    starting_cash: Decimal = Decimal(1_000_000)
    slippage_bps: Decimal = Decimal(5)
    commission_bps: Decimal = Decimal(10)
    fill_latency_ms: int = Field(default=0, ge=0)
    fill_seed: int = 0
    mark_interval_s: float = Field(default=1.0, ge=0)

    # Event time: an account publishes at most one P&L snapshot per
    # interval (plus one at end of input); a tick dated more than the skew
    # after the newest one seen is dead-lettered; a time without a UTC
    # offset is read in NAIVE_TIMEZONE (an IANA zone, or "reject").
    snapshot_interval_s: float = Field(default=10.0, ge=0)
    max_tick_skew_s: float = Field(default=86_400.0, gt=0)
    naive_timezone: str = "UTC"

    # Scale-out of the trading stage over workers and processes: above 1,
    # each strategy's instruments spread over INSTRUMENT_GROUPS groups and
    # the accounts over TRADING_SHARDS shards (dataflows.instrument_groups);
    # the messages are the same for any values.
    instrument_groups: int = Field(default=1, ge=1)
    trading_shards: int = Field(default=1, ge=1)

    # Zerodha Kite Connect. Live orders need all three *and* the switch.
    zerodha_live_trading: bool = False
    kite_api_key: SecretStr = SecretStr("")
    kite_access_token: SecretStr = SecretStr("")
    kite_api_secret: SecretStr = SecretStr("")
    kite_ws_url: str = "wss://ws.kite.trade"
    kite_api_url: str = "https://api.kite.trade"
    kite_login_url: str = "https://kite.zerodha.com/connect/login"
    kite_timeout_s: float = Field(default=10.0, gt=0)
    # Live order guards and shape (connectors/kite). Products and order types
    # per strategy are JSON maps, e.g. ZERODHA_PRODUCTS='{"swing": "CNC"}'.
    zerodha_max_order_notional: Decimal = Field(default=Decimal(100_000), gt=0)
    zerodha_max_daily_orders: int = Field(default=100, ge=1)
    zerodha_orders_per_second: int = Field(default=8, ge=1, le=9)
    zerodha_default_product: Literal["MIS", "CNC"] = "MIS"
    zerodha_products: dict[str, Literal["MIS", "CNC"]] = Field(default_factory=dict)
    zerodha_order_type: Literal["MARKET", "LIMIT"] = "MARKET"
    zerodha_order_types: dict[str, Literal["MARKET", "LIMIT"]] = Field(default_factory=dict)
    # Overrides of operators.zerodha_charges.ChargesSchedule, e.g. '{"intraday_brokerage_cap": "20"}'.
    zerodha_charges: dict[str, Decimal] = Field(default_factory=dict)
    # dataflows.zerodha_updates: order-book poll interval, postback listener (port 0: off).
    zerodha_poll_s: float = Field(default=1.0, gt=0)
    zerodha_postback_host: str = "127.0.0.1"
    zerodha_postback_port: int = Field(default=0, ge=0)
    # Kill switch: how often flows re-read the halt flags (<= 1 s).
    halt_refresh_s: float = Field(default=1.0, gt=0, le=1.0)

    # Alpaca market data.
    alpaca_api_key: SecretStr = SecretStr("")
    alpaca_secret_key: SecretStr = SecretStr("")
    alpaca_stream_url: str = "wss://stream.data.alpaca.markets/v2/iex"
    alpaca_data_url: str = "https://data.alpaca.markets"

    # Yahoo Finance chart API (historical bars).
    yahoo_url: str = "https://query1.finance.yahoo.com"

    # dataflows.market_feed: FEED_SOURCE picks the source; unset, a tick file
    # when FEED_FILE is set, else a simulated market.
    feed_source: FeedSourceName | None = None
    feed_file: Path | None = None
    feed_rate: float = Field(default=2000.0, gt=0)
    feed_instruments: int = Field(default=20, ge=1)
    feed_limit: int | None = Field(default=None, ge=1)
    feed_seed: int = 7
    # Kite tokens or EXCHANGE:SYMBOL names (kite); a filter on history (postgres).
    feed_tokens: Annotated[tuple[int | str, ...], NoDecode] = ()
    feed_mode: Literal["ltp", "quote", "full"] = "full"
    feed_symbols: Annotated[tuple[str, ...], NoDecode] = ()
    feed_channels: Annotated[tuple[Channel, ...], NoDecode] = ("trades",)
    # History replay speed: event time runs this many times real time.
    feed_speed: float | Literal["max"] = "max"
    # Bounds on bar start times: start inclusive, end exclusive (naive = UTC).
    feed_start: datetime | None = None
    feed_end: datetime | None = None

    # Live Kafka inputs follow their topics forever; false stops each flow at
    # the current end of its input (tests, batch re-runs) and turns reload off.
    kafka_tail: bool = True

    # Strategy configuration reload (live), seconds between polls.
    strategy_reload_s: float = Field(default=2.0, gt=0)
    metrics_port: int = Field(default=0, ge=0)
    # Where ``/metrics`` listens; loopback unless exposed on purpose (0.0.0.0 in a pod).
    metrics_host: str = "127.0.0.1"

    # Writes to Redis, Postgres and broker APIs (operators.failures): a
    # transient error is tried this many times; every retried class stops
    # once its full-jitter backoff (base doubling to max, seconds) would
    # exceed the budget, and the batch goes to the DLQ of its topic.
    retry_max_attempts_transient: int = Field(default=5, ge=1)
    retry_base_s: float = Field(default=0.1, ge=0)
    retry_max_s: float = Field(default=5.0, ge=0)
    retry_budget_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _stored_kite_token(cls, data: Any) -> Any:
        # KITE_ACCESS_TOKEN wins; else the token `alpha-panda kite login` stored
        # (DATA_DIR/secrets/kite_access_token, mode 0600).
        if not isinstance(data, dict) or data.get("kite_access_token"):
            return data
        path = Path(data.get("data_dir") or ".alpha-panda") / "secrets" / "kite_access_token"
        if path.is_file() and not path.stat().st_mode & 0o077:
            token = path.read_text("utf-8").strip()
            if token:
                return {**data, "kite_access_token": token}
        return data

    # `alpha-panda serve`: the read API and dashboard. Without a token every
    # route answers 401; bind beyond loopback only behind TLS.
    dashboard_token: SecretStr = SecretStr("")
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8765, ge=0, le=65535)

    # Alerts from `serve`: webhook URLs (comma-separated; a Telegram Bot API
    # sendMessage URL with ?chat_id= gets Telegram's form), checked every
    # ALERT_CHECK_S. A condition that stays true fires again only after
    # ALERT_COOLDOWN_S. The daily P&L summary goes out at ALERT_DAILY_SUMMARY_AT
    # (HH:MM, UTC; empty: never).
    alert_webhook_urls: SecretStr = SecretStr("")
    alert_check_s: float = Field(default=10.0, gt=0)
    alert_cooldown_s: float = Field(default=300.0, ge=0)
    alert_dlq_per_minute: float = Field(default=10.0, ge=0)
    alert_lag_messages: int = Field(default=10_000, ge=0)
    alert_daily_summary_at: str = "10:05"

    @field_validator("alert_daily_summary_at")
    @classmethod
    def _check_summary_time(cls, value: str) -> str:
        if value:
            hours, sep, minutes = value.partition(":")
            if not (sep and hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
                msg = f"ALERT_DAILY_SUMMARY_AT must be HH:MM (UTC) or empty, got {value!r}"
                raise ValueError(msg)
        return value

    @field_validator("active_brokers", mode="before")
    @classmethod
    def _split_brokers(cls, value: object) -> object:
        value = _split(value)
        if not isinstance(value, tuple | list):
            msg = f"ACTIVE_BROKERS must be a comma-separated list, got {value!r}"
            raise ValueError(msg)  # pydantic reports ValueError as a validation error
        unknown = set(value) - set(BROKERS)
        if unknown:
            msg = f"ACTIVE_BROKERS has unknown broker(s) {sorted(unknown)}; known: {list(BROKERS)}"
            raise ValueError(msg)
        return value

    @field_validator("feed_tokens", mode="before")
    @classmethod
    def _feed_tokens(cls, value: object) -> object:
        parts = _split(value)
        if isinstance(parts, tuple | list):
            return tuple(int(p) if isinstance(p, str) and p.isdigit() else p for p in parts)
        return parts

    @field_validator("feed_symbols", mode="before")
    @classmethod
    def _feed_symbols(cls, value: object) -> object:
        parts = _split(value)
        return tuple(str(p).upper() for p in parts) if isinstance(parts, tuple | list) else parts

    @field_validator("feed_channels", mode="before")
    @classmethod
    def _feed_channels(cls, value: object) -> object:
        return _split(value)

    @field_validator("feed_speed", mode="before")
    @classmethod
    def _feed_speed(cls, value: object) -> Speed:
        try:
            return parse_speed(value)  # type: ignore[arg-type]
        except MarketDataError as err:
            raise ValueError(str(err)) from err

    @field_validator("feed_start", "feed_end", mode="after")
    @classmethod
    def _feed_utc(cls, value: datetime | None) -> datetime | None:
        return as_utc(value) if value is not None else None

    @property
    def feed_source_name(self) -> FeedSourceName:
        """The feed source: ``FEED_SOURCE``; unset, ``file`` if ``FEED_FILE`` is set, else ``simulator``."""
        if self.feed_source is not None:
            return self.feed_source
        return "file" if self.feed_file is not None else "simulator"

    @field_validator("naive_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value != "reject":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as err:
                msg = (
                    f"NAIVE_TIMEZONE must be an IANA time zone (e.g. Asia/Kolkata) or 'reject', got {value!r}"
                )
                raise ValueError(msg) from err
        return value

    def naive_zone(self) -> tzinfo | str:
        """How decoders read a time without an offset: a zone, or ``"reject"``."""
        if self.naive_timezone == "reject":
            return "reject"
        return UTC if self.naive_timezone == "UTC" else ZoneInfo(self.naive_timezone)

    def kafka_security(self) -> dict[str, str]:
        """The librdkafka security settings that are set, secrets revealed (for clients only)."""
        values = {
            "security.protocol": self.kafka_security_protocol,
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": self.kafka_sasl_password.get_secret_value(),
            "ssl.ca.location": self.kafka_ssl_ca_location,
            "ssl.certificate.location": self.kafka_ssl_certificate_location,
            "ssl.key.location": self.kafka_ssl_key_location,
            "ssl.key.password": self.kafka_ssl_key_password.get_secret_value(),
            "ssl.endpoint.identification.algorithm": self.kafka_ssl_endpoint_identification_algorithm,
        }
        return {key: value for key, value in values.items() if value}

    @property
    def zerodha_live(self) -> bool:
        """Live Zerodha orders only with credentials and the explicit switch."""
        return bool(
            self.zerodha_live_trading
            and self.kite_api_key.get_secret_value()
            and self.kite_access_token.get_secret_value()
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment once."""
    return Settings()
