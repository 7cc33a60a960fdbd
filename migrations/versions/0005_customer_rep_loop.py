"""the customer-rep loop: escalations as work items with notes, rep settings, bounce dates, who recorded

Existing escalation notices get their work items from the next tick (`escalations.sync`), which also
resolves the ones whose reason has gone.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 13:49:02
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import lifecycle.models

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('rep',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('locale', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('timezone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', lifecycle.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', lifecycle.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    op.create_table('escalation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('notice_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('milestone_id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('resolved_at', lifecycle.models.UTCDateTime(), nullable=True),
    sa.Column('created_at', lifecycle.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', lifecycle.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ),
    sa.ForeignKeyConstraint(['milestone_id'], ['milestone.id'], ),
    sa.ForeignKeyConstraint(['notice_id'], ['notice.id'], ),
    sa.ForeignKeyConstraint(['release_id'], ['release.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('notice_id')
    )
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_escalation_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_escalation_milestone_id'), ['milestone_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_escalation_owner'), ['owner'], unique=False)
        batch_op.create_index(batch_op.f('ix_escalation_state'), ['state'], unique=False)

    op.create_table('escalationnote',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('escalation_id', sa.Integer(), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('by', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
    sa.Column('at', lifecycle.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['escalation_id'], ['escalation.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('escalationnote', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_escalationnote_escalation_id'), ['escalation_id'], unique=False)

    with op.batch_alter_table('agreement', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recorded_by', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True))

    with op.batch_alter_table('agreementchange', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recorded_by', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True))

    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('undeliverable_at', lifecycle.models.UTCDateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_column('undeliverable_at')

    with op.batch_alter_table('agreementchange', schema=None) as batch_op:
        batch_op.drop_column('recorded_by')

    with op.batch_alter_table('agreement', schema=None) as batch_op:
        batch_op.drop_column('recorded_by')

    with op.batch_alter_table('escalationnote', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_escalationnote_escalation_id'))

    op.drop_table('escalationnote')
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_escalation_state'))
        batch_op.drop_index(batch_op.f('ix_escalation_owner'))
        batch_op.drop_index(batch_op.f('ix_escalation_milestone_id'))
        batch_op.drop_index(batch_op.f('ix_escalation_customer_id'))

    op.drop_table('escalation')
    op.drop_table('rep')
