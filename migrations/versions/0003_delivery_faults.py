"""delivery under faults: claim owner and heartbeat, send start, first attempt, possible duplicates

`claimed_by` and `heartbeat_at` let a sweep tell a dead claim from a live one (sooner than a timeout
on the claim's own host); `send_started_at` tells whether a dead claim may have sent; `first_attempt_at`
starts the retry span; `possible_duplicate` marks a send repeated after an unknown outcome. The new
statuses (`unknown`, `cancelled`) need no schema change.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from lifecycle.models import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("send_started_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("first_attempt_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("possible_duplicate", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    # Rows already attempted start their retry span at their first claim.
    op.execute("UPDATE delivery SET first_attempt_at = claimed_at WHERE attempts > 0")


def downgrade() -> None:
    op.execute("UPDATE delivery SET status = 'pending' WHERE status = 'unknown'")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("possible_duplicate")
        batch_op.drop_column("first_attempt_at")
        batch_op.drop_column("send_started_at")
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("claimed_by")
