"""channels as plug-ins: customer channel subscriptions (webhook, Slack, Teams), deliveries through them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import lifecycle.models

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('customer_channel',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('config', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('verified_at', lifecycle.models.UTCDateTime(), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('disabled_at', lifecycle.models.UTCDateTime(), nullable=True),
    sa.Column('created_at', lifecycle.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', lifecycle.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('customer_channel', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_channel_customer_id'), ['customer_id'], unique=False)

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subscription_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_delivery_subscription_id'), ['subscription_id'], unique=False)
        batch_op.create_foreign_key('fk_delivery_subscription_id', 'customer_channel', ['subscription_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_constraint('fk_delivery_subscription_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_delivery_subscription_id'))
        batch_op.drop_column('subscription_id')

    with op.batch_alter_table('customer_channel', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_channel_customer_id'))

    op.drop_table('customer_channel')
