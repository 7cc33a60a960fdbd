"""registry change sets: a hold on the notices a change makes due at once, and undo

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 13:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import lifecycle.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registrychange",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("by", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
        sa.Column("at", lifecycle.models.UTCDateTime(), nullable=False),
        sa.Column("hold_until", lifecycle.models.UTCDateTime(), nullable=False),
        sa.Column("undone_at", lifecycle.models.UTCDateTime(), nullable=True),
        sa.Column("undone_by", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("milestonechange", schema=None) as batch_op:
        batch_op.add_column(sa.Column("change_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_milestonechange_change_id"), ["change_id"], unique=False)
        batch_op.create_foreign_key("fk_milestonechange_change_id", "registrychange", ["change_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("milestonechange", schema=None) as batch_op:
        batch_op.drop_constraint("fk_milestonechange_change_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_milestonechange_change_id"))
        batch_op.drop_column("change_id")
    op.drop_table("registrychange")
