"""Why a message failed to decode, in the project's own words.

The codec decodes with msgspec on the fast path. When that fails, this
module looks at the message again, slowly and only for the bad one, and
names the field and the problem itself: ``invalid UTF-8 in field
data.symbol``, ``missing required field data.timestamp``, ``field
data.last_price must be a number, got a string``. No library's wording
reaches a dead letter, so the reasons stay stable across releases.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import msgspec
from msgspec import inspect as mi

MAX_DEPTH: Final = 64
"""No message of the contract nests deeper; deeper JSON is rejected unread."""

_VALUE_CHARS: Final = 40
_POST_INIT: Final = re.compile(r" - at `\$(?P<path>[^`]*)`$")


class _NotAJsonNumberError(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NotAJsonNumberError(name)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _depth(raw: bytes) -> int:
    """Deepest nesting of ``[`` and ``{`` outside strings (a cheap scan)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def too_deep(raw: bytes) -> bool:
    """Whether ``raw`` nests deeper than :data:`MAX_DEPTH` (checked before any parse)."""
    # Fast exit: a message cannot nest deeper than its count of openers.
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    return _depth(raw) > MAX_DEPTH


def _bad_utf8_field(raw: bytes) -> str | None:
    """The path of the first string holding invalid UTF-8, if the JSON parses."""
    try:
        value = json.loads(raw.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return None

    def walk(node: object, path: str) -> str | None:
        if isinstance(node, str):
            return path if any("\udc80" <= ch <= "\udcff" for ch in node) else None
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and any("\udc80" <= ch <= "\udcff" for ch in key):
                    return _join(path, "<key>")
                found = walk(child, _join(path, str(key)))
                if found:
                    return found
        if isinstance(node, list):
            for index, child in enumerate(node):
                found = walk(child, f"{path}[{index}]")
                if found:
                    return found
        return None

    return walk(value, "")


def _check_number(value: Any, info: Any, path: str) -> str | None:
    checks: tuple[tuple[str, str, Callable[[Any, Any], bool]], ...] = (
        ("gt", ">", operator.gt),
        ("ge", ">=", operator.ge),
        ("lt", "<", operator.lt),
        ("le", "<=", operator.le),
    )
    for attr, symbol, holds in checks:
        bound = getattr(info, attr, None)
        if bound is not None and not holds(value, bound):
            return f"field {path} must be {symbol} {bound}, got {_show(value)}"
    return None


def _check_scalar(value: Any, info: Any, path: str) -> str | None:  # noqa: C901 - one branch per JSON type
    if isinstance(info, mi.AnyType):
        return None
    if isinstance(info, mi.NoneType):
        return None if value is None else f"field {path} must be null, got {_kind(value)}"
    if isinstance(info, mi.BoolType):
        return None if isinstance(value, bool) else f"field {path} must be true or false, got {_kind(value)}"
    if isinstance(info, mi.IntType):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"field {path} must be an integer, got {_kind(value)}"
        return _check_number(value, info, path)
    if isinstance(info, mi.FloatType):
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"field {path} must be a number, got {_kind(value)}"
        if not math.isfinite(value):
            return f"field {path} must be a finite number, got {_show(value)}"
        return _check_number(value, info, path)
    if isinstance(info, mi.StrType):
        return None if isinstance(value, str) else f"field {path} must be a string, got {_kind(value)}"
    if isinstance(info, mi.DateTimeType):
        if not isinstance(value, str):
            return f"field {path} must be an ISO-8601 time, got {_kind(value)}"
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return f"field {path} is not an ISO-8601 time: {_show(value)}"
        return None
    if isinstance(info, mi.LiteralType):
        if value in info.values:
            return None
        allowed = ", ".join(repr(v) for v in info.values)
        return f"field {path} must be one of {allowed}, got {_show(value)}"
    return f"field {path} has an unsupported type"


def _check(value: Any, info: Any, path: str) -> str | None:  # one branch per container type
    if isinstance(info, mi.UnionType):
        return _check_union(value, info, path)
    if isinstance(info, mi.StructType):
        return _check_struct(value, info, path)
    if isinstance(info, mi.DictType):
        if not isinstance(value, dict):
            return f"field {path} must be an object, got {_kind(value)}"
        for key, child in value.items():
            problem = _check(child, info.value_type, _join(path, str(key)))
            if problem:
                return problem
        return None
    if isinstance(info, mi.ListType | mi.TupleType | mi.VarTupleType):
        if not isinstance(value, list):
            return f"field {path} must be an array, got {_kind(value)}"
        item = getattr(info, "item_type", None)
        for index, child in enumerate(value):
            problem = _check(child, item, f"{path}[{index}]") if item is not None else None
            if problem:
                return problem
        return None
    if isinstance(info, mi.Metadata):
        return _check(value, info.type, path)
    return _check_scalar(value, info, path)


def _check_union(value: Any, info: Any, path: str) -> str | None:
    structs = [t for t in info.types if isinstance(t, mi.StructType) and t.tag_field]
    if structs and isinstance(value, dict):
        tag_field = str(structs[0].tag_field)
        if tag_field not in value:
            return f"missing required field {_join(path, tag_field)}"
        for struct in structs:
            if value[tag_field] == struct.tag:
                return _check_struct(value, struct, path)
        return f"unknown event type {_show(value[tag_field])} in field {_join(path, tag_field)}"
    problems = []
    for option in info.types:
        problem = _check(value, option, path)
        if problem is None:
            return None
        if not isinstance(option, mi.NoneType):
            problems.append(problem)
    return problems[0] if problems else f"field {path} must be null, got {_kind(value)}"


def _check_struct(value: Any, info: Any, path: str) -> str | None:
    if not isinstance(value, dict):
        where = f"field {path}" if path else "the message"
        return f"{where} must be an object, got {_kind(value)}"
    if info.tag_field and value.get(info.tag_field) != info.tag:
        got = value.get(info.tag_field)
        field = _join(path, info.tag_field)
        return f"unexpected event type {_show(got)} in field {field}, expected {info.tag!r}"
    for field in info.fields:
        name = field.encode_name
        if name not in value:
            if field.required:
                return f"missing required field {_join(path, name)}"
            continue
        problem = _check(value[name], field.type, _join(path, name))
        if problem:
            return problem
    return None


def explain(raw: bytes, target: Any, err: Exception) -> str:
    """Name what is wrong with ``raw`` as a ``target`` message, in our words.

    ``err`` is the fast decoder's error: only its location is used, and only
    when the failure came from one of our own validation hooks.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        field = _bad_utf8_field(raw)
        return f"invalid UTF-8 in field {field}" if field else f"invalid UTF-8 at byte {bad.start}"
    if too_deep(raw):
        return f"JSON nested deeper than {MAX_DEPTH} levels"
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except _NotAJsonNumberError as constant:
        return f"malformed JSON: {constant} is not a JSON number"
    except json.JSONDecodeError as bad:
        return f"malformed JSON at character {bad.pos}"
    except RecursionError:
        return f"JSON nested deeper than {MAX_DEPTH} levels"
    problem = _check(value, mi.type_info(target), "")
    if problem:
        return problem
    # The structure is right, so one of our own __post_init__ checks refused
    # a value: its ValueError (our text) is the cause; the decoder adds where.
    cause = err.__cause__
    if isinstance(err, msgspec.ValidationError) and isinstance(cause, ValueError):
        match = _POST_INIT.search(str(err))
        path = match["path"].lstrip(".") if match else ""
        return f"{cause} (field {path})" if path else str(cause)
    return "message does not match its schema"
