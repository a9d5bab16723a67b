"""Logging: one line per record, as text or as JSON (``IDP_LOG_FORMAT``), each carrying the id
of the request it belongs to.

The request id comes from a trusted proxy's ``X-Request-ID`` when it is well-formed, else it is
made here; it is returned in the response's ``X-Request-ID`` and stored with every event the
request records (``details["request_id"]``), so a support case can be followed from the
user's error page through the logs to the activity log. It lives in a context variable, so
code below the views (events, services) reads it without importing Flask.

Nothing secret is ever passed to a logger: messages name things (user ids, client ids, event
tags) and exception *types*, never passwords, tokens, codes or secrets; a test greps the logs
of a full run for them.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str] = ContextVar("idp_request_id", default="")
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def new_request_id(incoming: str | None) -> str:
    """A proxy's request id when it looks like one, else a fresh random one."""
    if incoming and _WELL_FORMED.match(incoming):
        return incoming
    return secrets.token_hex(16)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_JSON_LINE_BREAKING = re.compile(r"[\x7f\x85\u2028\u2029]")


class TextFormatter(logging.Formatter):
    """The text format, one line per record: control characters and line breaks in the
    message (which can quote what a request sent, e.g. the ``error`` an SSO callback names)
    are written as escapes, so nobody can forge a record of their own (OWASP Logging Cheat
    Sheet, "Event collection": sanitize CR, LF and delimiters). A traceback, made by idp, keeps
    its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        return _LINE_BREAKING.sub(lambda m: m.group().encode("unicode_escape").decode(), line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id and,
    for an exception, its type and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "process": record.process,
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["traceback"] = self.formatException(record.exc_info)
        # json escapes the C0 controls; these others end a line for many readers (Python's
        # splitlines, JavaScript): escaped too, still the same JSON string.
        return _JSON_LINE_BREAKING.sub(
            lambda m: f"\\u{ord(m.group()):04x}", json.dumps(entry, ensure_ascii=False)
        )


def configure_logging(level: str, fmt: str = "text") -> None:
    """Configure the ``idp`` logger tree once per process (a second call only adjusts)."""
    logger = logging.getLogger("idp")
    logger.setLevel(level)
    formatter: logging.Formatter = (
        JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT)
    )
    handler = next((h for h in logger.handlers if getattr(h, "_idp", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._idp = True  # type: ignore[attr-defined]
        handler.addFilter(RequestIdFilter())
        logger.addHandler(handler)
        logger.propagate = False
    handler.setFormatter(formatter)
