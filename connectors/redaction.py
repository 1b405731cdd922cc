"""Server addresses and driver errors made safe to print.

Postgres connection strings are parsed the way the driver parses them (libpq,
through ``psycopg.conninfo``): ``postgresql://`` URIs, ``key=value`` strings
and ``?password=`` query parameters. Redis and other URLs are parsed as
redis-py parses them (``urllib.parse``, percent-decoded). The printable form is
rebuilt from the parsed parts with every secret replaced by ``***``, so neither
a password nor its percent-encoded spelling can survive.

A string that cannot be parsed, or whose parse is ambiguous (an unencoded
``@`` or ``/`` in the credentials, which the driver would split somewhere
else), is never echoed: it prints as :data:`HIDDEN`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

HIDDEN: Final = "<connection string hidden: it cannot be parsed safely>"
"""What an unparseable or ambiguous connection string prints as."""

HIDDEN_DETAILS: Final = "details hidden: the connection string cannot be parsed safely"
"""What a driver error prints as when its connection string cannot be parsed."""

MASK: Final = "***"

_PG_SCHEMES: Final = ("postgresql", "postgres")
_PG_SECRET_KEYS: Final = frozenset({"password", "sslpassword"})
_URL_SECRET_KEYS: Final = frozenset({"password", "pass", "pwd", "secret", "token"})


class _Unsafe(Exception):  # internal signal, never escapes this module
    """The string cannot be parsed unambiguously."""


def _is_postgres(text: str) -> bool:
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    return scheme in _PG_SCHEMES or ("://" not in text and "=" in text)


def _pg_parse(text: str) -> dict[str, str]:
    from psycopg import Error as PsycopgError  # only Postgres strings need it
    from psycopg.conninfo import conninfo_to_dict

    if "://" in text:
        head = text.split("?", 1)[0]
        rest = head.split("://", 1)[1]
        ats = rest.count("@")
        # libpq ends the credentials at the first '@' or '/': more than one '@',
        # or a '/' before it, means an unencoded character moved the split.
        if ats > 1 or (ats == 1 and "/" in rest.split("@", 1)[0]):
            raise _Unsafe
    try:
        parsed = conninfo_to_dict(text)
    except (PsycopgError, ValueError, TypeError) as err:
        raise _Unsafe from err
    return {key: str(value) for key, value in parsed.items() if value is not None}


def _pg_redacted(text: str) -> str:
    parsed = _pg_parse(text)
    if "://" not in text:
        parts = []
        for key, value in parsed.items():
            shown = MASK if key in _PG_SECRET_KEYS else value
            needs_quotes = not shown or any(c in shown for c in " '\\")
            quoted = "'" + shown.replace("\\", "\\\\").replace("'", "\\'") + "'" if needs_quotes else shown
            parts.append(f"{key}={quoted}")
        return " ".join(parts)
    scheme = text.split("://", 1)[0]
    user = parsed.pop("user", None)
    password = parsed.pop("password", None)
    hosts = parsed.pop("host", "").split(",") if "host" in parsed else []
    ports = parsed.pop("port", "").split(",") if "port" in parsed else []
    dbname = parsed.pop("dbname", None)
    netloc = ""
    if user is not None:
        netloc = quote(user, safe="")
    if password is not None:
        netloc += f":{MASK}"
    if netloc:
        netloc += "@"
    addresses = []
    for index, host in enumerate(hosts or [""]):
        shown = f"[{host}]" if ":" in host else quote(host, safe="")
        port = ports[index] if index < len(ports) else (ports[0] if len(ports) == 1 else "")
        addresses.append(f"{shown}:{port}" if port else shown)
    netloc += ",".join(addresses)
    path = f"/{quote(dbname, safe='')}" if dbname is not None else ""
    query = {key: MASK if key in _PG_SECRET_KEYS else value for key, value in parsed.items()}
    return f"{scheme}://{netloc}{path}" + (f"?{urlencode(query, safe='*')}" if query else "")


def _pg_secrets(text: str) -> list[str]:
    parsed = _pg_parse(text)
    return [value for key, value in parsed.items() if key in _PG_SECRET_KEYS and value]


def _url_parts(text: str) -> tuple[SplitResult, list[tuple[str, str]]]:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as err:
        raise _Unsafe from err
    # urllib ends the host part at the first '/', '?' or '#': an '@' after it
    # means the credentials held one of those, unencoded.
    if "@" in parts.path + parts.query + parts.fragment:
        raise _Unsafe
    return parts, query


def _url_redacted(text: str) -> str:
    parts, query = _url_parts(text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}" if ":" in userinfo else f"{MASK}@{hostport}"
    shown_query = [(k, MASK if k.lower() in _URL_SECRET_KEYS else v) for k, v in query]
    rebuilt = f"{parts.scheme}://{netloc}{parts.path}"
    if shown_query:
        rebuilt += "?" + urlencode(shown_query, safe="*/:")
    return rebuilt


def _url_secrets(text: str) -> list[str]:
    parts, query = _url_parts(text)
    found = [v for k, v in query if k.lower() in _URL_SECRET_KEYS and v]
    netloc = parts.netloc
    if "@" in netloc:
        userinfo = netloc.rpartition("@")[0]
        # A userinfo without ':' is a token (redis://TOKEN@host), treated as a password.
        raw = userinfo.split(":", 1)[1] if ":" in userinfo else userinfo
        if raw:
            found += [raw, unquote(raw)]
    return found


def _is_plain(text: str) -> bool:
    """A ``host:port[,host:port]`` bootstrap list or a bare host: nothing to hide."""
    return "://" not in text and "=" not in text and "@" not in text


def redact_url(url: str) -> str:
    """Return ``url`` with every password replaced by ``***``, safe to log.

    ``postgresql://app:s3cret@db:5432/alpha`` -> ``postgresql://app:***@db:5432/alpha``;
    ``host=db password=s3cret`` -> ``host=db password=***``;
    ``redis://:s3cret@127.0.0.1:6379/0`` -> ``redis://:***@127.0.0.1:6379/0``.
    A ``host:port`` bootstrap list, or a URL without credentials, keeps its
    address. Anything that cannot be parsed safely prints as :data:`HIDDEN`.
    """
    if _is_plain(url):
        return url
    try:
        return _pg_redacted(url) if _is_postgres(url) else _url_redacted(url)
    except _Unsafe:
        return HIDDEN


def url_secrets(url: str) -> list[str] | None:
    """Every secret spelling in ``url`` (raw and percent-decoded); None if unparseable."""
    if _is_plain(url):
        return []
    try:
        found = _pg_secrets(url) if _is_postgres(url) else _url_secrets(url)
    except _Unsafe:
        return None
    spellings = set(found)
    spellings |= {quote(s, safe="") for s in found} | {quote(s) for s in found}
    return sorted((s for s in spellings if s), key=len, reverse=True)


def redact_text(text: str, urls: Iterable[str]) -> str:
    """Return ``text`` (e.g. a driver's error) with the secrets of ``urls`` masked.

    Each whole URL is first replaced by its redacted form, then every spelling
    of every password by ``***``. When a URL cannot be parsed its secrets are
    unknown, so the text is not shown at all: :data:`HIDDEN_DETAILS`.
    """
    for url in urls:
        if not url:
            continue
        secrets = url_secrets(url)
        if secrets is None:
            return HIDDEN_DETAILS
        text = text.replace(url, redact_url(url))
        for secret in secrets:
            text = text.replace(secret, MASK)
    return text


def describe_error(err: BaseException, *urls: str) -> str:
    """``str(err)`` safe to print next to ``urls`` (see :func:`redact_text`)."""
    return redact_text(str(err), urls)
