"""Typed construction of frozen configs from loosely typed parameter mappings.

Parameters arrive from YAML files or Postgres JSON columns as plain Python
values. :func:`build_config` checks each one against the type of the config
field it names and turns any problem into a :class:`ConfigError` that names
the config, the parameter and the value. Range checks live in each config's
``__post_init__`` (see :func:`require`), so directly constructed configs are
validated too.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from operators.errors import ConfigError

ConfigT = TypeVar("ConfigT")


def require(condition: bool, owner: object, name: str, value: object, expectation: str) -> None:
    """Raise :class:`ConfigError` unless ``condition`` holds.

    ``owner`` is the config (or its class name); the message reads
    ``<Owner>.<name> must be <expectation>, got <value>``.
    """
    if not condition:
        label = owner if isinstance(owner, str) else type(owner).__name__
        msg = f"{label}.{name} must be {expectation}, got {value!r}"
        raise ConfigError(msg)


def _as_int(owner: str, name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    msg = f"{owner}.{name} must be an integer, got {value!r}"
    raise ConfigError(msg)


def _as_float(owner: str, name: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    msg = f"{owner}.{name} must be a finite number, got {value!r}"
    raise ConfigError(msg)


def _as_decimal(owner: str, name: str, value: object) -> Decimal:
    converted: Decimal | None = None
    if isinstance(value, Decimal):
        converted = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # repr() gives the shortest decimal that round-trips, never the binary expansion.
        converted = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            converted = Decimal(value.strip())
        except InvalidOperation:
            converted = None
    if converted is not None and converted.is_finite():
        return converted
    msg = f"{owner}.{name} must be a finite decimal number, got {value!r}"
    raise ConfigError(msg)


def _as_timedelta(owner: str, name: str, value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=_as_float(owner, name, value))


def _as_bool(owner: str, name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    msg = f"{owner}.{name} must be true or false, got {value!r}"
    raise ConfigError(msg)


_CONVERTERS: dict[object, Any] = {
    int: _as_int,
    float: _as_float,
    Decimal: _as_decimal,
    timedelta: _as_timedelta,
    bool: _as_bool,
}


def build_config(cls: type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
    """Return ``cls(**values)`` with every value converted to its field's type.

    Absent parameters keep the config's defaults. Ints are accepted where a
    float or Decimal is expected; floats become Decimals through ``repr`` (so
    ``0.1`` is ``Decimal("0.1")``); a duration may be a ``timedelta`` or a
    number of seconds.

    Raises:
        ConfigError: an unknown parameter name, a value of the wrong type,
            or one the config's own checks reject.
    """
    owner = cls.__name__
    if not isinstance(values, Mapping):
        msg = f"{owner} parameters must be a mapping, got {values!r}"
        raise ConfigError(msg)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            msg = f"{owner} has no parameter {name!r} (got {value!r}); known: {sorted(known)}"
            raise ConfigError(msg)
        convert = _CONVERTERS[hints[name]]
        kwargs[name] = convert(owner, name, value)
    return cls(**kwargs)
