"""alert groups: one row per alert group and the thread it has; the last investigation per service

Revision ID: 0005_alert_groups
Revises: 0004_audit_context
"""

from alembic import op
import sqlalchemy as sa


revision = '0005_alert_groups'
down_revision = '0004_audit_context'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alert_groups',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('group_key', sa.Text(), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('labels', sa.JSON(), nullable=False),
        sa.Column('alerts', sa.JSON(), nullable=False),
        sa.Column('service', sa.String(length=128), nullable=True),
        sa.Column('platform', sa.String(length=16), nullable=True),
        sa.Column('channel', sa.String(length=256), nullable=True),
        sa.Column('thread', sa.JSON(), nullable=True),
        sa.Column('session_id', sa.String(length=40), nullable=True),
        sa.Column('opening_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deliveries', sa.Integer(), nullable=False),
        sa.Column('investigated_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('investigated', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['session_id'], ['conversations.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key_hash'),
    )
    op.create_index('ix_alert_groups_session', 'alert_groups', ['session_id'])
    op.create_index('ix_alert_groups_status', 'alert_groups', ['source', 'status'])
    op.create_table(
        'alert_services',
        sa.Column('service', sa.String(length=128), nullable=False),
        sa.Column('group_id', sa.String(length=40), nullable=False),
        sa.Column('investigated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('service'),
    )


def downgrade() -> None:
    op.drop_table('alert_services')
    op.drop_index('ix_alert_groups_status', table_name='alert_groups')
    op.drop_index('ix_alert_groups_session', table_name='alert_groups')
    op.drop_table('alert_groups')
