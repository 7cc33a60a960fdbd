"""lifecycle churn: releases ended without a date, reasons for customers, date-keyed stage notices

Stage and escalation notices are keyed by the milestone date they speak of, so that a moved milestone
gets its reminders again for the new date (and never twice for the same date).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 13:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("release", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ended", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
    with op.batch_alter_table("milestonechange", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason_code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column("customer_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    # stage:<customer>:<milestone>:<stage>  ->  stage:<customer>:<milestone>:<stage>:<date>
    op.execute(
        "UPDATE notice SET key = key || ':' || CAST(milestone_date AS VARCHAR) "
        "WHERE kind IN ('stage', 'escalation') AND milestone_date IS NOT NULL"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE notice SET key = substr(key, 1, length(key) - 11) "
        "WHERE kind IN ('stage', 'escalation') AND milestone_date IS NOT NULL"
    )
    with op.batch_alter_table("milestonechange", schema=None) as batch_op:
        batch_op.drop_column("customer_reason")
        batch_op.drop_column("reason_code")
    with op.batch_alter_table("release", schema=None) as batch_op:
        batch_op.drop_column("ended")
