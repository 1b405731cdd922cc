"""Connection strings and driver errors are printed without any spelling of a password."""

from __future__ import annotations

import psycopg
import pytest

from connectors.redaction import HIDDEN, HIDDEN_DETAILS, describe_error, redact_text, redact_url, url_secrets

SECRET = "p@s/s?%w"  # every character that breaks naive URL splitting
ENCODED = "p%40s%2Fs%3F%25w"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db.internal:5432/alpha", "postgresql://app:***@db.internal:5432/alpha"),
        (f"postgresql://app:{ENCODED}@db:5432/alpha", "postgresql://app:***@db:5432/alpha"),
        (f"postgres://app:{ENCODED}@db/alpha", "postgres://app:***@db/alpha"),
        (
            f"postgresql://db:5432/alpha?user=app&password={ENCODED}&sslmode=require",
            "postgresql://app:***@db:5432/alpha?sslmode=require",
        ),
        ("postgresql://app:pw@h1:1,h2:2/alpha", "postgresql://app:***@h1:1,h2:2/alpha"),
        ("postgresql://app:pa?ss@db/alpha", "postgresql://app:***@db/alpha"),  # libpq keeps '?' here
        ("postgresql://postgres@127.0.0.1:5432/alpha", "postgresql://postgres@127.0.0.1:5432/alpha"),
        ("host=db port=5432 user=app password=s3cret dbname=alpha", None),
        (f"host=db password='{SECRET} x' dbname=alpha", None),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (f"redis://:{ENCODED}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (f"rediss://default:{ENCODED}@cache:6380/1", "rediss://default:***@cache:6380/1"),
        ("redis://cache:6379/0?password=s3cret", "redis://cache:6379/0?password=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("127.0.0.1:9092,127.0.0.2:9092", "127.0.0.1:9092,127.0.0.2:9092"),
    ],
)
def test_passwords_never_survive_redaction(url: str, shown: str | None) -> None:
    redacted = redact_url(url)
    if shown is not None:
        assert redacted == shown
    secrets = url_secrets(url)
    assert secrets is not None
    for secret in secrets:
        assert secret not in redacted
    assert "s3cret" not in redacted
    assert ENCODED not in redacted
    assert SECRET not in redacted


def test_key_value_conninfo_keeps_its_other_parameters() -> None:
    redacted = redact_url("host=db port=5432 user=app password=s3cret dbname=alpha")
    assert sorted(redacted.split()) == ["dbname=alpha", "host=db", "password=***", "port=5432", "user=app"]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:p@ss@db/alpha",  # libpq would take host 'ss@db'
        "postgresql://app:pa/ss@db/alpha",  # libpq would take host 'app', port 'pa'
        "host=db password=abc def",  # not parseable: 'def' is half the password
        "redis://:pa/ss@127.0.0.1:6379/0",  # urllib would end the host at '/'
        "redis://:pw@127.0.0.1:notaport/0",
    ],
)
def test_ambiguous_strings_are_hidden_whole(url: str) -> None:
    assert redact_url(url) == HIDDEN
    assert url_secrets(url) is None
    assert redact_text(f"cannot connect to {url}", [url]) == HIDDEN_DETAILS


def test_a_driver_error_echoing_the_password_is_masked() -> None:
    url = f"postgresql://app:{ENCODED}@127.0.0.1:1/alpha"
    text = f"connection to {url} failed for password {SECRET} (raw {ENCODED})"
    masked = redact_text(text, [url])
    assert SECRET not in masked
    assert ENCODED not in masked
    assert "postgresql://app:***@127.0.0.1:1/alpha" in masked


def test_libpq_parse_errors_that_echo_the_conninfo_are_hidden() -> None:
    url = "host=db password=abc defsecret"
    with pytest.raises(psycopg.ProgrammingError) as caught:
        psycopg.connect(url)
    assert describe_error(caught.value, url) == HIDDEN_DETAILS
