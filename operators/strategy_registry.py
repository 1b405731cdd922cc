"""Which class a ``strategy_type`` names: a built-in, an entry point, or ``package.module:ClassName``.

Built-ins (``momentum``, ``mean_reversion``) are strategy classes like any
other (:mod:`operators.strategy_api`). A user strategy is found through the
Python entry-point group ``alpha_panda.strategies`` (the entry point's name is
the ``strategy_type``), or named directly as ``"package.module:ClassName"``.
Every failure (nothing by that name, an import that fails, a class missing
part of the interface) is a :class:`ConfigError` saying what was looked up
and why it failed; callers add the strategy id.
"""

from __future__ import annotations

import dataclasses
import importlib
from importlib import metadata
from typing import Any

from operators.errors import ConfigError
from operators.mean_reversion import MeanReversionRule
from operators.momentum import MomentumRule

ENTRY_POINT_GROUP = "alpha_panda.strategies"

BUILTINS: dict[str, type] = {"momentum": MomentumRule, "mean_reversion": MeanReversionRule}

_resolved: dict[str, type] = {}
"""User strategy classes already found (a lookup scans installed packages once per name)."""


def forget_resolved() -> None:
    """Drop the classes found so far, so the next lookup sees packages installed or removed since."""
    _resolved.clear()


def check_interface(cls: object, where: str) -> type:
    """Return ``cls`` if it is a strategy class: ``config_type`` a dataclass, ``new_state`` and ``on_price``.

    Raises:
        ConfigError: naming ``where`` and the missing part.
    """
    if not isinstance(cls, type):
        msg = f"{where} is not a class, got {cls!r}"
        raise ConfigError(msg)
    config_type = getattr(cls, "config_type", None)
    if not (isinstance(config_type, type) and dataclasses.is_dataclass(config_type)):
        msg = f"{where} ({cls.__name__}) has no config_type dataclass"
        raise ConfigError(msg)
    for method in ("new_state", "on_price"):
        if not callable(getattr(cls, method, None)):
            msg = f"{where} ({cls.__name__}) has no {method}() method"
            raise ConfigError(msg)
    return cls


def _import_path(strategy_type: str) -> Any:
    module_name, _, attribute = strategy_type.partition(":")
    if not module_name or not attribute:
        msg = f"strategy_type {strategy_type!r} must read 'package.module:ClassName'"
        raise ConfigError(msg)
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as err:
        msg = f"strategy_type {strategy_type!r}: cannot import {module_name}: {type(err).__name__}: {err}"
        raise ConfigError(msg) from err
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError as err:
            msg = f"strategy_type {strategy_type!r}: module {module_name} has no {attribute}"
            raise ConfigError(msg) from err
    return found


def _entry_point(strategy_type: str) -> Any:
    matches = metadata.entry_points(group=ENTRY_POINT_GROUP, name=strategy_type)
    if not matches:
        msg = (
            f"strategy_type must be one of {sorted(BUILTINS)}, an entry point of {ENTRY_POINT_GROUP} "
            f"or 'package.module:ClassName', got {strategy_type!r}"
        )
        raise ConfigError(msg)
    entry = sorted(matches, key=lambda e: e.value)[0]
    try:
        return entry.load()
    except Exception as err:
        msg = (
            f"strategy_type {strategy_type!r}: entry point {entry.value} fails to load: "
            f"{type(err).__name__}: {err}"
        )
        raise ConfigError(msg) from err


def resolve(strategy_type: object) -> type:
    """Return the strategy class ``strategy_type`` names.

    Raises:
        ConfigError: not a string, nothing by that name, an import that
            fails, or a class without the strategy interface.
    """
    if not isinstance(strategy_type, str) or not strategy_type:
        msg = (
            f"strategy_type must be one of {sorted(BUILTINS)}, an entry point of {ENTRY_POINT_GROUP} "
            f"or 'package.module:ClassName', got {strategy_type!r}"
        )
        raise ConfigError(msg)
    builtin = BUILTINS.get(strategy_type)
    if builtin is not None:
        return builtin
    known = _resolved.get(strategy_type)
    if known is not None:
        return known
    if ":" in strategy_type:
        found = _import_path(strategy_type)
        where = f"strategy_type {strategy_type!r}"
    else:
        found = _entry_point(strategy_type)
        where = f"strategy_type {strategy_type!r} (entry point of {ENTRY_POINT_GROUP})"
    cls = check_interface(found, where)
    _resolved[strategy_type] = cls
    return cls
