"""Upgrades with old nodes still running (README, "Deployment"): a migration's upgrade only
expands the schema — new tables, columns, indexes, wider types — so the previous release keeps
working on the new schema while nodes are replaced one by one. Dropping or renaming a table or
column (the contract step) needs its own release after every node runs the new one; this test
makes that a deliberate decision (add the revision to CONTRACT_RELEASES with the reason)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

VERSIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"
FORBIDDEN = ("drop_table", "drop_column", "rename_table", "new_column_name")
CONTRACT_RELEASES: dict[str, str] = {}  # revision -> why dropping is safe now


def upgrade_source(path: Path) -> str:
    tree = ast.parse(path.read_text())
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"]
    return ast.get_source_segment(path.read_text(), function) or ""


@pytest.mark.parametrize("path", sorted(VERSIONS.glob("*.py")), ids=lambda p: p.stem[:4])
def test_upgrades_only_expand_the_schema(path: Path) -> None:
    if path.stem[:4] in CONTRACT_RELEASES:
        return
    source = upgrade_source(path)
    used = [word for word in FORBIDDEN if word in source]
    assert not used, f"{path.name} contracts the schema ({used}) while old nodes may still run"


def test_the_check_sees_a_drop() -> None:
    sample = VERSIONS / "0001_initial_schema_accounts_sessions_.py"
    assert "drop_table" in sample.read_text()  # in its downgrade, which is allowed
    assert "drop_table" not in upgrade_source(sample)
