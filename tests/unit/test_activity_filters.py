"""Activity-log filters: time zones, whole days in the reader's zone, the cursor, bad input."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from idp.activity.export import csv_lines, escape_cell
from idp.activity.filters import ActivityFilterError, Cursor, parse_filters
from idp.activity.sentences import ActionGroup


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_defaults_show_everything_in_utc() -> None:
    f = parse_filters({})
    assert f.tz.key == "UTC"
    assert (f.since, f.until, f.product, f.group, f.text, f.cursor) == (
        None, None, None, None, "", None)
    assert f.query_args() == {}


def test_a_day_in_zurich_runs_from_local_midnight_to_the_next() -> None:
    f = parse_filters({"tz": "Europe/Zurich", "from": "2026-03-10", "to": "2026-03-10"})
    assert f.since == datetime(2026, 3, 9, 23, 0, tzinfo=UTC)
    assert f.until == datetime(2026, 3, 10, 23, 0, tzinfo=UTC)


def test_the_spring_forward_day_has_23_hours() -> None:
    f = parse_filters({"tz": "Europe/Zurich", "from": "2026-03-29", "to": "2026-03-29"})
    assert f.since == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert f.until == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)


def test_a_zone_behind_utc() -> None:
    f = parse_filters({"tz": "America/Los_Angeles", "from": "2026-01-05", "to": "2026-01-06"})
    assert f.since == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert f.until == datetime(2026, 1, 7, 8, 0, tzinfo=UTC)


def test_filters_survive_a_round_trip_through_the_query_string() -> None:
    args = {"tz": "Asia/Tokyo", "from": "2026-01-01", "to": "2026-01-31",
            "product": "mail", "type": "sign-ins", "q": "wrong  password"}
    f = parse_filters(args)
    assert f.group is ActionGroup.SIGN_INS and f.text == "wrong password"
    assert parse_filters(f.query_args()) == f


def test_cursor_round_trip_is_exact_to_the_microsecond() -> None:
    cursor = Cursor(datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC), 987654321)
    assert Cursor.decode(cursor.encode()) == cursor
    assert parse_filters({"cursor": cursor.encode()}).cursor == cursor


@pytest.mark.parametrize(
    ("args", "param", "text"),
    [
        ({"from": "yesterday"}, "from", "YYYY-MM-DD"),
        ({"to": "2026-02-30"}, "to", "YYYY-MM-DD"),
        ({"from": "2026-3-1"}, "from", "YYYY-MM-DD"),
        ({"from": "0001-01-01"}, "from", "between 1970 and 9998"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "from", "after the end date"),
        ({"type": "everything"}, "type", "Unknown type of action"),
        ({"tz": "Mars/Olympus_Mons"}, "tz", "Unknown time zone"),
        ({"tz": "../../../etc/passwd"}, "tz", "Unknown time zone"),
        ({"cursor": "not a cursor"}, "cursor", "not valid"),
        ({"cursor": _b64("1:99999999999999999999:5")}, "cursor", "not valid"),  # overflow
        ({"cursor": _b64("2:5:5")}, "cursor", "not valid"),  # another version
        ({"cursor": _b64("1:-5:5")}, "cursor", "not valid"),
        ({"cursor": _b64("1:5")}, "cursor", "not valid"),
        ({"q": "x" * 201}, "q", "at most 200"),
        ({"product": "<script>"}, "product", "Unknown product"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    args: dict[str, str], param: str, text: str
) -> None:
    with pytest.raises(ActivityFilterError) as info:
        parse_filters(args)
    assert info.value.param == param
    assert text in info.value.message


def test_member_is_read_only_for_the_organization_view() -> None:
    assert parse_filters({"member": "abc"}).member_id is None
    assert parse_filters({"member": "abc"}, with_member=True).member_id == "abc"
    with pytest.raises(ActivityFilterError):
        parse_filters({"member": "' or 1=1"}, with_member=True)


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("You signed in", "You signed in"),
        ("203.0.113.5", "203.0.113.5"),
        ("", ""),
    ],
)
def test_cells_that_a_spreadsheet_would_evaluate_are_escaped(value: str, escaped: str) -> None:
    assert escape_cell(value) == escaped


def test_csv_starts_with_a_bom_and_a_header() -> None:
    lines = list(csv_lines([]))
    assert lines == ["\ufeffid,time,time_utc,action,action_label,sentence,product,"
                     "product_name,device,ip,details\r\n"]
