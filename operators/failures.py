"""Error classification and retry policy: pure, engine-free, I/O-free.

Connectors hand their exceptions to :func:`classify` together with rules
naming their own exception classes (``{"ConnectionError": "infrastructure"}``
or ``(predicate, class)`` pairs), so this module never imports a client
library. The classes are the contract's ``error_type`` values:

- ``poison``: the message itself is bad (undecodable, rejected as data);
  retrying cannot help. Never retried; dead-lettered, not replayable.
- ``authentication``: credentials refused. Never retried; not replayable
  until a human fixes the credentials.
- ``business``: the other side refused the request on its merits (e.g. a
  broker rejects an order). Never retried; needs review.
- ``transient``: a blip (timeout, deadlock, server busy). A few retries.
- ``infrastructure``: a server is unreachable. Retried within a time budget.
- ``rate_limit``: HTTP 429 and the like. Retried within the budget, never
  sooner than the server's ``retry_after``.

Backoff is exponential with full jitter: before retry ``n`` (1-based) the
caller sleeps a uniform random time in ``[0, min(max_s, base_s * 2**(n-1)))``
drawn from an injected :class:`random.Random`, so tests get exact numbers.
:func:`backoff_ceiling` and :func:`full_jitter_delay` are that policy alone,
for every retry and reconnect loop (feeds reconnecting, HTTP 429 fallbacks).

Config, State, Logic: :class:`RetryConfig` (frozen, per class a
:class:`RetryPolicy`), :class:`RetryState` (attempts and time waited for one
piece of work) and :class:`RetryLogic` (decides the next delay or gives up).
:func:`retry_call` is the loop, with the sleep injected.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal, TypeVar

from operators.errors import OperatorError

ErrorClass = Literal["poison", "transient", "infrastructure", "rate_limit", "business", "authentication"]
"""The contract's ``failure_info.error_type`` values."""

ERROR_CLASSES: Final[tuple[ErrorClass, ...]] = (
    "poison",
    "transient",
    "infrastructure",
    "rate_limit",
    "business",
    "authentication",
)
NEVER_RETRIED: Final[frozenset[ErrorClass]] = frozenset({"poison", "authentication", "business"})

Predicate = Callable[[BaseException], bool]
Rules = Mapping[str, ErrorClass] | Sequence[tuple[str | Predicate, ErrorClass]]
"""Connector-supplied rules: exception class names (any class in the MRO) or
predicates, each mapped to a class; the first match wins."""

DEFAULT_RULES: Final[tuple[tuple[str, ErrorClass], ...]] = (
    ("DecodeError", "poison"),
    ("UnicodeDecodeError", "poison"),
    ("JSONDecodeError", "poison"),
    ("ValidationError", "poison"),
    ("AuthenticationError", "authentication"),
    ("PermissionError", "authentication"),
    ("TimeoutError", "transient"),
    ("TimeoutException", "transient"),
    ("ConnectionError", "infrastructure"),
    ("OperationalError", "infrastructure"),
    ("PoolTimeout", "infrastructure"),
    ("OSError", "infrastructure"),
)
"""Classification by class name when no connector rule matches."""

_STATUS_ATTRIBUTES: Final = ("status_code", "status", "http_status")


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, then what caused it (``raise ... from``), then its context."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _names(error: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(error).__mro__]


def _match(error: BaseException, rules: Rules) -> ErrorClass | None:
    pairs = rules.items() if isinstance(rules, Mapping) else rules
    names = _names(error)
    for matcher, error_class in pairs:
        if (matcher in names) if isinstance(matcher, str) else matcher(error):
            return error_class
    return None


def http_status(error: BaseException) -> int | None:
    """Return an HTTP status carried by ``error`` (``status_code``, ``status``, ``http_status``)."""
    for name in _STATUS_ATTRIBUTES:
        value = getattr(error, name, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    return None


def _by_status(status: int) -> ErrorClass | None:
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "authentication"
    if status == 408 or status >= 500:
        return "transient"
    if 400 <= status < 500:
        return "business"
    return None


def classify(error: BaseException, rules: Rules = (), *, default: ErrorClass = "business") -> ErrorClass:
    """Return the class of ``error``.

    In: the exception, connector ``rules`` (tried first), ``default`` for an
    error nothing recognises. Walks the error and its causes, outermost
    first; for each: the rules, an HTTP status attribute (429 rate_limit,
    401/403 authentication, 408/5xx transient, other 4xx business), then
    :data:`DEFAULT_RULES` by class name.
    Out: one of :data:`ERROR_CLASSES`.
    """
    for link in _chain(error):
        found = _match(link, rules)
        if found is None and (status := http_status(link)) is not None:
            found = _by_status(status)
        if found is None:
            found = _match(link, DEFAULT_RULES)
        if found is not None:
            return found
    return default


def retry_after_s(error: BaseException) -> float | None:
    """Return the server's requested wait in seconds (``retry_after`` attribute), if any."""
    for link in _chain(error):
        value = getattr(link, "retry_after", None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


# --- Config -------------------------------------------------------------------------


def backoff_ceiling(retry: int, base_s: float, max_s: float) -> float:
    """The exponential backoff ceiling in seconds before retry ``retry`` (1-based).

    ``min(max_s, base_s * 2**(retry - 1))``.
    """
    exponent = min(retry - 1, 60)  # 2**60 s is already past any ceiling
    return float(min(max_s, base_s * 2**exponent))


def full_jitter_delay(retry: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """The delay in seconds before retry ``retry``: uniform in ``[0, backoff_ceiling)`` from ``rng``."""
    return rng.random() * backoff_ceiling(retry, base_s, max_s)


@dataclass(frozen=True)
class RetryPolicy:
    """How one error class is retried.

    ``max_attempts`` counts the first try (1 = never retried). ``base_s`` and
    ``max_s`` shape the backoff ceiling ``min(max_s, base_s * 2**(n-1))``
    before retry ``n``; ``budget_s`` bounds the total time slept for one
    piece of work (``None``: attempts alone bound it).
    """

    max_attempts: int
    base_s: float = 0.1
    max_s: float = 5.0
    budget_s: float | None = None

    def __post_init__(self) -> None:
        """Reject policies that could never run or never stop."""
        if self.max_attempts < 1:
            msg = f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}"
            raise OperatorError(msg)
        if self.base_s < 0 or self.max_s < 0 or (self.budget_s is not None and self.budget_s < 0):
            msg = f"RetryPolicy times must be >= 0, got base_s={self.base_s} max_s={self.max_s}"
            raise OperatorError(msg)

    def ceiling(self, retry: int) -> float:
        """The backoff ceiling in seconds before retry number ``retry`` (1-based)."""
        return backoff_ceiling(retry, self.base_s, self.max_s)

    def delay(self, retry: int, rng: random.Random) -> float:
        """Full-jitter delay in seconds before retry ``retry``: uniform in [0, ceiling)."""
        return full_jitter_delay(retry, self.base_s, self.max_s, rng)


NO_RETRY: Final = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class RetryConfig:
    """A :class:`RetryPolicy` per error class; poison, authentication and business never retry."""

    policies: Mapping[ErrorClass, RetryPolicy] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        *,
        max_attempts_transient: int = 5,
        base_s: float = 0.1,
        max_s: float = 5.0,
        budget_s: float = 30.0,
    ) -> RetryConfig:
        """The standard policies.

        transient: ``max_attempts_transient`` tries within ``budget_s``;
        infrastructure and rate_limit: as many tries as fit in ``budget_s``
        of backoff (an outage shorter than that delays work, loses nothing).
        """
        bounded = RetryPolicy(max_attempts_transient, base_s, max_s, budget_s)
        by_budget = RetryPolicy(1_000_000, base_s, max_s, budget_s)
        return cls({"transient": bounded, "infrastructure": by_budget, "rate_limit": by_budget})

    def policy(self, error_class: ErrorClass) -> RetryPolicy:
        """The policy of ``error_class`` (never retried for poison, authentication, business)."""
        if error_class in NEVER_RETRIED:
            return NO_RETRY
        return self.policies.get(error_class, NO_RETRY)


# --- State --------------------------------------------------------------------------


@dataclass
class RetryState:
    """Progress of one piece of work: tries made and seconds slept so far."""

    attempts: int = 0
    waited_s: float = 0.0

    def copy(self) -> RetryState:
        """An independent copy."""
        return replace(self)


@dataclass(frozen=True)
class Failure:
    """Why a piece of work was given up: the last error, its class, tries made.

    ``retry_count`` is the contract's ``failure_info.retry_count`` (tries - 1).
    """

    error: BaseException
    error_class: ErrorClass
    attempts: int
    waited_s: float

    @property
    def retry_count(self) -> int:
        """Retries made after the first try."""
        return self.attempts - 1

    @property
    def error_name(self) -> str:
        """The exception's class name."""
        return type(self.error).__name__


class RetryExhaustedError(OperatorError):
    """Work failed and may not (or may no longer) be retried; ``failure`` says why."""

    def __init__(self, step: str, failure: Failure) -> None:
        self.step = step
        self.failure = failure
        super().__init__(
            f"{step}: gave up after {failure.attempts} attempt(s) over {failure.waited_s:.1f} s "
            f"({failure.error_class}): {failure.error_name}: {failure.error}"
        )


# --- Logic --------------------------------------------------------------------------


class RetryLogic:
    """Decides, failure by failure, whether to retry and after how long.

    In: a :class:`RetryConfig`, a seeded :class:`random.Random`, and per
    failure its class and the server's ``retry_after`` (s) if any.
    Out: the delay in seconds before the next try, or ``None`` to give up.
    """

    def __init__(self, config: RetryConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng

    def new_state(self) -> RetryState:
        """State for a new piece of work."""
        return RetryState()

    def on_failure(
        self, state: RetryState, error_class: ErrorClass, retry_after: float | None = None
    ) -> float | None:
        """Record a failed try; return the delay before the next one, or ``None``."""
        state.attempts += 1
        policy = self.config.policy(error_class)
        if state.attempts >= policy.max_attempts:
            return None
        delay = policy.delay(state.attempts, self._rng)
        if error_class == "rate_limit" and retry_after is not None:
            delay = max(delay, retry_after)
        if policy.budget_s is not None and state.waited_s + delay > policy.budget_s:
            return None
        state.waited_s += delay
        return delay


T = TypeVar("T")

OnRetry = Callable[[Failure, float], None]
"""Told about each failure that will be retried, and the delay (s) before it."""


def retry_call(  # each argument is a separate injected dependency
    step: str,
    work: Callable[[], T],
    logic: RetryLogic,
    *,
    rules: Rules = (),
    sleep: Callable[[float], None],
    on_retry: OnRetry | None = None,
    default: ErrorClass = "business",
) -> T:
    """Run ``work`` until it succeeds or its error class's policy gives up.

    In: the step name (for messages), the work, the retry logic, the
    connector's classification ``rules``, an injected ``sleep`` (s).
    Out: ``work()``'s result.

    Raises:
        RetryExhaustedError: the last error was never retryable
            (poison, authentication, business) or its attempts/budget ran out;
            ``.failure`` holds the error, its class and the attempts made.
    """
    state = logic.new_state()
    while True:
        try:
            return work()
        except Exception as err:  # every failure is classified, none escapes unnamed
            error_class = classify(err, rules, default=default)
            delay = logic.on_failure(state, error_class, retry_after_s(err))
            failure = Failure(err, error_class, state.attempts, state.waited_s)
            if delay is None:
                raise RetryExhaustedError(step, failure) from err
            if on_retry is not None:
                on_retry(failure, delay)
            sleep(delay)
