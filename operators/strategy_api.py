"""The interface every strategy implements, and the edge-triggering the framework adds.

A strategy is three things:

- a **config**: a frozen dataclass named by the class attribute
  ``config_type``, built from a configuration row's ``parameters`` by
  :func:`config_from_parameters` (unknown names, wrong types and values its
  ``__post_init__`` rejects are :class:`ConfigError` naming the parameter and
  the value);
- a **state**: a picklable object deriving from :class:`StrategyState`,
  made by ``new_state()``, one per (strategy, instrument); ``copy()`` (when
  defined; otherwise a deep copy is taken) must share nothing mutable with
  the live state;
- **logic**: ``on_price(state, price) -> Decision | None``, called with
  every price of one instrument in event-time order. It says what it wants
  *now*: ``BUY``, ``SELL`` (as a :class:`Decision` with quantity,
  confidence and metadata) or ``None``, on every tick while the condition
  holds. Optionally ``on_prices(state, prices) -> list[Decision | None]``,
  the same over many prices of one instrument at once, for speed; it must
  give the same decisions as calling ``on_price`` in a loop.

The framework (:class:`EdgeTriggered`) turns those wishes into signals: a
signal only when the wanted side changes (``None`` in between resets it),
so a strategy never repeats the same signal while its condition stays
true. Warm-up is the strategy's own affair (it returns ``None`` until it
has seen enough prices); routing, risk, execution and accounting are the
shard's, and a strategy never sees them.
"""

from __future__ import annotations

import copy as copy_module
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from operators.decision import Decision
from operators.errors import ConfigError
from operators.parameters import build_config
from schemas.events import Side


class StrategyState:
    """Base of every strategy's per-instrument state.

    ``active`` belongs to the framework: the side of the last signal while
    the strategy still wants it (``None`` otherwise). A strategy may read it,
    never write it: when it wants the side already signalled, the framework
    drops its decision, so it may skip computing confidence and metadata
    and return any decision of that side. :func:`copy_state` carries it
    over, so a ``copy()`` need not.
    """

    active: Side | None = None


ConfigT = TypeVar("ConfigT")
StateT = TypeVar("StateT", bound=StrategyState)


@runtime_checkable
class Strategy(Protocol):
    """What a strategy class provides (see the module docstring).

    ``config_type``: the frozen config dataclass. ``__init__(config)``,
    ``new_state()`` and ``on_price(state, price)`` as described; an
    ``on_prices`` batch step is optional.
    """

    config_type: ClassVar[type]
    config: Any

    def new_state(self) -> Any:
        """Return the state of an instrument that has seen no prices yet."""

    def on_price(self, state: Any, price: float) -> Decision | None:
        """Add ``price`` to ``state``; return what the strategy wants now (every tick it wants it)."""


def config_from_parameters(config_type: type[ConfigT], parameters: Mapping[str, Any]) -> ConfigT:
    """Return ``config_type`` built from ``parameters`` (its own ``from_parameters`` when it has one).

    Raises:
        ConfigError: naming the config, the parameter and the value.
    """
    own = getattr(config_type, "from_parameters", None)
    if callable(own):
        built: ConfigT = own(parameters)
        return built
    return build_config(config_type, parameters)


def copy_state(state: StateT) -> StateT:
    """Return a copy of a strategy's state that shares no mutable data with it.

    Uses the state's own ``copy()`` when it defines one, else a deep copy;
    the framework's ``active`` is carried over either way.
    """
    own = getattr(state, "copy", None)
    copied: StateT = own() if callable(own) else copy_module.deepcopy(state)
    if copied.active != state.active:
        copied.active = state.active
    return copied


RuleT = TypeVar("RuleT")


def _edge_triggered(step: Callable[[Any, float], Decision | None]) -> Callable[[Any, float], Decision | None]:
    """``step`` (what a strategy wants) made into signals: a decision only when the wanted side changes.

    A plain closure, not a method: it runs on every tick of every strategy.
    """

    def on_price(state: Any, price: float) -> Decision | None:
        decision = step(state, price)
        if decision is None:
            if state.active is not None:
                state.active = None
            return None
        side = decision[0]
        if side == state.active:
            return None
        state.active = side
        return decision

    return on_price


_RUNNER_OF: dict[type, type[EdgeTriggered[Any]]] = {}


class EdgeTriggered(Generic[RuleT]):
    """A strategy as the framework runs it: its wishes, edge-triggered into signals.

    In: the prices of one instrument, one at a time (:meth:`on_price`) or
    many (:meth:`on_prices`). Out: a :class:`Decision` when the wanted side
    differs from the one signalled last, else ``None``. ``rule`` is the
    strategy object; ``config`` its config.

    A subclass that sets ``rule_type`` is what :func:`runner_type` returns
    for that strategy class (the built-ins keep their public names that way).
    """

    rule_type: ClassVar[type | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Remember which runner class a subclass is for."""
        super().__init_subclass__(**kwargs)
        rule_type = cls.__dict__.get("rule_type")
        if rule_type is not None:
            _RUNNER_OF[rule_type] = cls

    def __init__(self, config: Any, rule_type: type[RuleT] | None = None) -> None:
        made = rule_type or self.rule_type
        if made is None:
            msg = f"{type(self).__name__} needs a strategy class (rule_type)"
            raise ConfigError(msg)
        self.rule: RuleT = made(config)
        self.config = config
        self._step: Any = self.rule.on_price
        self._batch = getattr(self.rule, "on_prices", None)
        self.on_price: Callable[[Any, float], Decision | None] = _edge_triggered(self._step)
        """Feed ``price``; return a decision when the wanted side changes, else ``None``."""

    def new_state(self) -> Any:
        """Return the strategy's fresh state for one instrument."""
        return self.rule.new_state()  # type: ignore[attr-defined]

    def on_prices(self, state: Any, prices: Sequence[float]) -> list[Decision | None]:
        """Feed many prices of one instrument; one entry per price, as :meth:`on_price` would give.

        Uses the strategy's ``on_prices`` batch step when it has one.
        """
        if self._batch is not None:
            wishes = self._batch(state, prices)
        else:
            wishes = [self._step(state, p) for p in prices]
        out: list[Decision | None] = []
        active = state.active
        for decision in wishes:
            if decision is None:
                active = None
                out.append(None)
            elif decision[0] == active:
                out.append(None)
            else:
                active = decision[0]
                out.append(decision)
        state.active = active
        return out


def runner_type(rule_type: type) -> type[EdgeTriggered[Any]] | None:
    """The :class:`EdgeTriggered` subclass registered for ``rule_type``, if any."""
    return _RUNNER_OF.get(rule_type)


def run_strategy(rule_type: type, config: Any) -> EdgeTriggered[Any]:
    """Return the framework's runner of strategy class ``rule_type`` with ``config``."""
    own = runner_type(rule_type)
    if own is not None:
        return own(config)
    return EdgeTriggered(config, rule_type)
