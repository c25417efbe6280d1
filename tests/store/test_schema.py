"""The schema revision the code checks stores against is the head of its migrations."""

from __future__ import annotations

from scheduler.store.db import SCHEMA_REVISION, head_revision


def test_the_written_out_schema_revision_is_the_head_of_the_migrations() -> None:
    # A new migration must move SCHEMA_REVISION too, or every store would be refused as
    # "older" (tests/cli checks that message) while `db migrate` says it is up to date.
    assert SCHEMA_REVISION == head_revision()
