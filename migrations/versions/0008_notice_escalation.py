"""a partial index on the escalation notices: each tick looks for escalation notices without an item, and
with no index on notice.kind that read every notice of the fleet (1.4 million at the reference fleet,
about half of a steady tick on SQLite); only kind = 'escalation' rows are in it, so no other notice
query can be planned through it

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 04:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ESCALATIONS = sa.text("kind = 'escalation'")


def upgrade() -> None:
    op.create_index(
        "ix_notice_escalation",
        "notice",
        ["id"],
        unique=False,
        sqlite_where=ESCALATIONS,
        postgresql_where=ESCALATIONS,
    )


def downgrade() -> None:
    op.drop_index("ix_notice_escalation", table_name="notice")
