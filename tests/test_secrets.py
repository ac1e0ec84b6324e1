"""Secrets stay out of the DEBUG log, reprs and error messages; the event handler sees them."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gluegun_actors import connection, http, websocket
from gluegun_actors.errors import InvalidArgument, InvalidOptions

TOKEN = "Bearer s3cr3t-token"


def test_the_debug_log_redacts_sensitive_headers_the_handler_does_not(
    embedded_server, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    options = connection.options(
        event_handler=lambda name, fields: seen.append((name, dict(fields))),
        sensitive_headers=["X-Tenant-Secret"],
    )
    conn = connection.open("127.0.0.1", embedded_server.port, options)
    try:
        connection.await_up(conn, 5000)
        with caplog.at_level(logging.DEBUG, logger="gluegun_actors.events"):
            headers = [
                ("authorization", TOKEN),
                ("cookie", "session=s3cr3t-cookie"),
                ("x-tenant-secret", "s3cr3t-tenant"),
                ("x-visible", "plain-value"),
            ]
            stream = http.get(conn, "/", headers)
            http.await_response(conn, stream, 5000)
            http.await_body(conn, stream, 5000)
    finally:
        connection.close(conn)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "request_headers" in logged
    assert "plain-value" in logged
    assert "<redacted>" in logged
    assert "s3cr3t" not in logged
    sent = [fields for name, fields in seen if name == "request_headers"]
    assert sent and ("authorization", TOKEN) in list(sent[0]["headers"])


def test_the_repr_of_websocket_options_hides_the_token() -> None:
    options = websocket.options(headers=[("Authorization", TOKEN), ("origin", "http://x")])
    assert "s3cr3t" not in repr(options)
    assert "http://x" in repr(options)
    assert options.headers[0] == ("Authorization", TOKEN)  # the value itself is kept


def test_sensitive_headers_are_checked() -> None:
    with pytest.raises(InvalidOptions, match="list of header names"):
        connection.options(sensitive_headers="authorization")
    with pytest.raises(InvalidOptions, match="not a header name"):
        connection.options(sensitive_headers=["bad name"])


def test_userinfo_in_a_host_is_refused_and_never_shown() -> None:
    with pytest.raises(InvalidArgument) as raised:
        connection.open("admin:pa55word@127.0.0.1", 80)
    assert "pa55word" not in str(raised.value)
    with pytest.raises(InvalidArgument) as raised:
        connection.open_url("http://admin:pa55word@127.0.0.1/")
    assert "pa55word" not in str(raised.value)
