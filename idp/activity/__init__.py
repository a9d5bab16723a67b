"""The activity log as people read it: filters, keyset pages, sentences, CSV export, retention.

Events are written by :func:`idp.events.record_event`; this package only reads them (and
deletes them once past the retention period). See docs in each module.
"""

from idp.activity.export import csv_lines, escape_cell
from idp.activity.filters import ActivityFilterError, ActivityFilters, Cursor, parse_filters
from idp.activity.query import (
    ActivityPage,
    ActivityRow,
    ActivityService,
    Member,
    OrganizationScope,
    Scope,
    UserScope,
)
from idp.activity.retention import PurgeResult, purge_events
from idp.activity.sentences import ActionGroup, Perspective, sentence

__all__ = [
    "ActionGroup",
    "ActivityFilterError",
    "ActivityFilters",
    "ActivityPage",
    "ActivityRow",
    "ActivityService",
    "Cursor",
    "Member",
    "OrganizationScope",
    "Perspective",
    "PurgeResult",
    "Scope",
    "UserScope",
    "csv_lines",
    "escape_cell",
    "parse_filters",
    "purge_events",
    "sentence",
]
