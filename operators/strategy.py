"""Strategy configuration, broker routing and per-instrument strategy execution.

A configuration row (Postgres ``strategy_configurations`` or a YAML entry)
becomes a hashable :class:`StrategyConfig`. :class:`InstrumentStrategies` is
the logic the engine keys by instrument token: on each tick it runs every
active strategy that trades the instrument, each with its own state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

from operators.decision import Decision
from operators.errors import ConfigError
from operators.strategy_api import EdgeTriggered, config_from_parameters, copy_state, run_strategy
from operators.strategy_registry import BUILTINS, resolve

STRATEGY_TYPES: tuple[str, ...] = tuple(BUILTINS)
"""The built-in strategy types; others come from entry points or ``package.module:ClassName``."""

StrategyType: TypeAlias = str
StrategyLogic: TypeAlias = EdgeTriggered[Any]
StrategyState: TypeAlias = Any
TypedConfig: TypeAlias = Any


def _typed_config(strategy_type: str, parameters: Mapping[str, Any]) -> TypedConfig:
    return config_from_parameters(resolve(strategy_type).config_type, parameters)  # type: ignore[attr-defined]


def _built(strategy_type: str, typed: TypedConfig) -> StrategyLogic:
    """The framework's runner of ``strategy_type`` with ``typed``, checked to make a state.

    Raises:
        ConfigError: the class's constructor or ``new_state`` raises.
    """
    cls = resolve(strategy_type)
    try:
        logic = run_strategy(cls, typed)
        logic.new_state()
    except ConfigError:
        raise
    except Exception as err:
        msg = f"strategy_type {strategy_type!r} ({cls.__name__}) is broken: {type(err).__name__}: {err}"
        raise ConfigError(msg) from err
    return logic


def _flag(strategy_id: str, row: Mapping[str, Any], name: str, default: bool) -> bool:
    value = row.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        msg = f"strategy {strategy_id!r}: {name} must be true or false, got {value!r}"
        raise ConfigError(msg)
    return value


def _instruments(strategy_id: str, value: object) -> tuple[int, ...]:
    tokens: dict[int, None] = {}  # ordered and de-duplicated
    if isinstance(value, list | tuple) and not value:
        msg = f"strategy {strategy_id!r}: instruments must list at least one instrument token, got []"
        raise ConfigError(msg)
    if isinstance(value, list | tuple):
        for token in value:
            if not isinstance(token, int) or isinstance(token, bool) or token <= 0:
                break
            tokens[token] = None
        else:
            return tuple(tokens)
    msg = f"strategy {strategy_id!r}: instruments must be a list of positive integers, got {value!r}"
    raise ConfigError(msg)


@dataclass(frozen=True)
class StrategyConfig:
    """One strategy's configuration, hashable and comparable.

    ``instruments``: instrument tokens the strategy trades (positive, unique).
    ``parameters``: the parameter mapping as sorted ``(name, value)`` pairs.
    """

    id: str
    strategy_type: StrategyType
    instruments: tuple[int, ...]
    parameters: tuple[tuple[str, Any], ...] = ()
    is_active: bool = True
    zerodha_trading_enabled: bool = False

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> StrategyConfig:
        """Build a config from a row as read from Postgres or YAML.

        Required keys: ``id`` (non-empty string), ``strategy_type``,
        ``instruments``; optional: ``parameters`` (mapping, default empty),
        ``is_active`` (default true), ``zerodha_trading_enabled`` (default
        false). Other keys (e.g. timestamps) are ignored. The parameters are
        validated by building the strategy's typed config.

        Raises:
            ConfigError: naming the strategy id, the field and the value.
        """
        strategy_id = row.get("id")
        if not isinstance(strategy_id, str) or not strategy_id:
            msg = f"strategy id must be a non-empty string, got {strategy_id!r}"
            raise ConfigError(msg)
        strategy_type = row.get("strategy_type")
        try:
            resolve(strategy_type)
        except ConfigError as err:
            msg = f"strategy {strategy_id!r}: {err}"
            raise ConfigError(msg) from err
        assert isinstance(strategy_type, str)  # noqa: S101 - resolve() accepts only strings
        parameters = row.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            msg = f"strategy {strategy_id!r}: parameters must be a mapping, got {parameters!r}"
            raise ConfigError(msg)
        try:
            typed = _typed_config(strategy_type, parameters)
        except ConfigError as err:
            msg = f"strategy {strategy_id!r}: parameters: {err}"
            raise ConfigError(msg) from err
        try:
            _built(strategy_type, typed)
        except ConfigError as err:
            msg = f"strategy {strategy_id!r}: {err}"
            raise ConfigError(msg) from err
        return cls(
            id=strategy_id,
            strategy_type=strategy_type,
            instruments=_instruments(strategy_id, row.get("instruments")),
            parameters=tuple(sorted(parameters.items())),
            is_active=_flag(strategy_id, row, "is_active", default=True),
            zerodha_trading_enabled=_flag(strategy_id, row, "zerodha_trading_enabled", default=False),
        )

    @property
    def params(self) -> dict[str, Any]:
        """Return the parameters as a fresh dict."""
        return dict(self.parameters)

    def typed_config(self) -> TypedConfig:
        """Return the strategy's validated typed config (defaults filled in).

        Raises:
            ConfigError: naming the strategy id, when the parameters are invalid.
        """
        try:
            return _typed_config(self.strategy_type, self.params)
        except ConfigError as err:
            msg = f"strategy {self.id!r}: {err}"
            raise ConfigError(msg) from err

    def brokers(self, active_brokers: Sequence[str]) -> tuple[str, ...]:
        """Return the brokers this strategy trades on, in order ``paper``, ``zerodha``.

        An active strategy trades on ``paper`` when ``"paper"`` is among
        ``active_brokers``, and on ``zerodha`` when ``zerodha_trading_enabled``
        and ``"zerodha"`` is among them. An inactive strategy trades nowhere.
        """
        if not self.is_active:
            return ()
        paper = ("paper",) if "paper" in active_brokers else ()
        if self.zerodha_trading_enabled and "zerodha" in active_brokers:
            return (*paper, "zerodha")
        return paper


def build_strategy(config: StrategyConfig) -> StrategyLogic:
    """Return the strategy logic for ``config``: its class, edge-triggered by the framework.

    Raises:
        ConfigError: naming the strategy id: an unknown or broken
            strategy type, or invalid parameters.
    """
    typed = config.typed_config()
    try:
        return _built(config.strategy_type, typed)
    except ConfigError as err:
        msg = f"strategy {config.id!r}: {err}"
        raise ConfigError(msg) from err


@dataclass
class InstrumentState:
    """Every strategy's state for one instrument.

    ``strategies``: per-strategy state keyed by strategy id.
    ``built_for``: the typed config each state was created for, so a state
    whose strategy changed type or parameters is restarted, not reused.
    """

    strategies: dict[str, StrategyState]
    built_for: dict[str, TypedConfig] = field(default_factory=dict)

    def copy(self) -> InstrumentState:
        """Return a copy that shares no mutable data with this state."""
        return InstrumentState(
            {sid: copy_state(state) for sid, state in self.strategies.items()},
            dict(self.built_for),  # typed configs are frozen: sharing them is safe
        )


class _Runner(NamedTuple):
    config: StrategyConfig
    typed: TypedConfig
    logic: StrategyLogic


def _adopt(state: InstrumentState, runner: _Runner) -> StrategyState:
    """Return ``runner``'s state in ``state``, new unless built for an equal config.

    Afterwards ``state.built_for`` holds ``runner.typed`` itself, so later
    ticks (also after a restore from a snapshot) pass an identity check.
    """
    sid = runner.config.id
    existing = state.strategies.get(sid)
    if existing is None or state.built_for.get(sid) != runner.typed:
        existing = state.strategies[sid] = runner.logic.new_state()
    state.built_for[sid] = runner.typed
    return existing


class InstrumentStrategies:
    """Runs the active strategies of one instrument on each of its prices.

    Build it from all configurations; it keeps the active ones and
    precomputes, per instrument token, the strategies that trade it.
    Per-strategy state lives in an :class:`InstrumentState` the engine keeps
    per token; it is created lazily on a strategy's first price.
    """

    def __init__(self, configs: Iterable[StrategyConfig]) -> None:
        runners: dict[str, _Runner] = {}
        for config in configs:
            if not config.is_active:
                continue
            if config.id in runners:
                msg = f"strategy {config.id!r} is configured twice"
                raise ConfigError(msg)
            logic = build_strategy(config)
            runners[config.id] = _Runner(config, logic.config, logic)
        self._runners = runners
        by_token: dict[int, list[_Runner]] = {}
        for runner in runners.values():
            for token in runner.config.instruments:
                by_token.setdefault(token, []).append(runner)
        self._by_token = {token: tuple(rs) for token, rs in by_token.items()}
        self._configs_by_token = {token: tuple(r.config for r in rs) for token, rs in self._by_token.items()}

    @property
    def configs(self) -> tuple[StrategyConfig, ...]:
        """Return the active configurations, in the order given."""
        return tuple(r.config for r in self._runners.values())

    @property
    def tokens(self) -> frozenset[int]:
        """Return every instrument token some active strategy trades."""
        return frozenset(self._by_token)

    def new_state(self) -> InstrumentState:
        """Return the state of an instrument no strategy has seen yet."""
        return InstrumentState({})

    def strategies_for(self, token: int) -> tuple[StrategyConfig, ...]:
        """Return the active strategies that trade ``token`` (empty if none)."""
        return self._configs_by_token.get(token, ())

    def on_price(
        self, state: InstrumentState, token: int, price: float
    ) -> list[tuple[StrategyConfig, Decision]]:
        """Feed ``price`` of instrument ``token`` to every strategy trading it.

        Returns the ``(config, decision)`` pairs of the strategies that want
        to trade now, in configuration order. State of strategies changed or
        removed since ``state`` was last used is restarted or dropped first.
        """
        runners = self._by_token.get(token, ())
        states = state.strategies
        if len(states) > len(runners):
            self.reconcile(state, token)
        built_for = state.built_for
        decisions: list[tuple[StrategyConfig, Decision]] = []
        for runner in runners:
            sid = runner.config.id
            if built_for.get(sid) is runner.typed:
                strategy_state = states[sid]
            else:
                strategy_state = _adopt(state, runner)
            decision = runner.logic.on_price(strategy_state, price)
            if decision is not None:
                decisions.append((runner.config, decision))
        return decisions

    def runner_state(self, state: InstrumentState, strategy_id: str) -> tuple[StrategyLogic, StrategyState]:
        """Strategy ``strategy_id``'s logic and its state in ``state`` (created or restarted as needed)."""
        runner = self._runners[strategy_id]
        existing = state.strategies.get(strategy_id)
        if existing is None or state.built_for.get(strategy_id) != runner.typed:
            existing = _adopt(state, runner)
        return runner.logic, existing

    def reconcile(self, state: InstrumentState, token: int) -> None:
        """Drop from ``state`` every strategy that no longer trades ``token`` as built.

        A strategy removed, made inactive, moved off ``token``, or whose type
        or parameters changed loses its state (a changed one warms up again
        on its next price).
        """
        wanted = {r.config.id: r.typed for r in self._by_token.get(token, ())}
        for sid in list(state.strategies):
            if sid not in wanted or state.built_for.get(sid) != wanted[sid]:
                del state.strategies[sid]
                state.built_for.pop(sid, None)
        for sid in list(state.built_for):
            if sid not in state.strategies:
                del state.built_for[sid]

    def with_configs(self, configs: Iterable[StrategyConfig]) -> InstrumentStrategies:
        """Return the logic for a new set of configurations (hot reload).

        Existing :class:`InstrumentState` objects stay valid: a strategy whose
        type and parameters are unchanged keeps its state (no new warm-up);
        a changed one restarts its warm-up; removed or inactive ones are
        dropped on the instrument's next price (or by :meth:`reconcile`).
        """
        return InstrumentStrategies(configs)
