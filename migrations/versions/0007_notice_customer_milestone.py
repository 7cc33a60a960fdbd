"""an index on notice (customer_id, milestone_id): the "superseded after an outage" check of a tick
looks up a customer's stages of a milestone per overdue stage; with the single-column indexes SQLite
searched every notice of the milestone (all its customers) for each, quadratic in the customers due

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 19:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.create_index("ix_notice_customer_milestone", ["customer_id", "milestone_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.drop_index("ix_notice_customer_milestone")
