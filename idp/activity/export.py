"""CSV export of a filtered activity-log view, streamed row by row.

Cells are escaped against CSV (formula) injection as the OWASP "CSV Injection" page
recommends: a cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
prefixed with a single quote, so a spreadsheet shows it as text instead of evaluating it. The
``csv`` module then quotes cells containing separators, quotes or line breaks. The file starts
with a UTF-8 byte order mark so spreadsheets read names with accents correctly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC

from idp.activity.query import ActivityRow

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"


def escape_cell(value: str) -> str:
    """``value`` made safe to open in a spreadsheet (OWASP CSV Injection)."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def header(with_member: bool) -> list[str]:
    member = ["member", "member_email"] if with_member else []
    return [
        "id",
        "time",
        "time_utc",
        *member,
        "action",
        "action_label",
        "sentence",
        "product",
        "product_name",
        "device",
        "ip",
        "details",
    ]


def cells(row: ActivityRow, with_member: bool) -> list[str]:
    member = [row.member_name, row.member_email] if with_member else []
    return [
        str(row.id),
        row.local_time.isoformat(),
        row.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        *member,
        row.action,
        row.action_label,
        row.sentence,
        row.product,
        row.product_label,
        row.device,
        row.ip,
        json.dumps(row.details, sort_keys=True, ensure_ascii=False) if row.details else "",
    ]


def csv_lines(rows: Iterable[ActivityRow], *, with_member: bool = False) -> Iterator[str]:
    """The CSV text, one line per row (RFC 4180 line endings), header first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(values: list[str]) -> str:
        writer.writerow([escape_cell(v) for v in values])
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield BOM + line(header(with_member))
    for row in rows:
        yield line(cells(row, with_member))
