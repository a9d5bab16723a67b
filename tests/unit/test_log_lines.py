"""Log records are one line each, whatever a request managed to put into a message."""

from __future__ import annotations

import io
import json
import logging

import pytest

from idp.observability.logs import configure_logging


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_message_with_line_breaks_stays_one_record(fmt: str) -> None:
    """An SSO callback's ``error`` (sent by whoever posts the form) is quoted in a log line:
    a line break in it must not start a forged record of its own (OWASP Logging Cheat Sheet)."""
    configure_logging("INFO", fmt)
    handler = next(h for h in logging.getLogger("idp").handlers if getattr(h, "_idp", False))
    assert isinstance(handler, logging.StreamHandler)
    output = io.StringIO()
    previous = handler.setStream(output)
    try:
        forged = "x\n2026-01-01 00:00:00,000 INFO idp.login [-]: admin signed in\r\u2028\x1b[2J"
        logging.getLogger("idp.flows.sso").info("sso callback: %s", f"entra error {forged}")
    finally:
        handler.setStream(previous)
        configure_logging("INFO", "text")
    written = output.getvalue()
    assert len(written.splitlines()) == 1 and written.endswith("\n")
    assert "\r" not in written and "\u2028" not in written and "\x1b" not in written
    if fmt == "json":
        assert json.loads(written)["message"].startswith("sso callback: entra error x\n2026")
    else:
        assert "entra error x\\n2026-01-01" in written
