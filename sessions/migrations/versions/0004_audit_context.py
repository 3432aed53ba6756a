"""audit context: where and how each audit row's actor acted, and how an approval was decided

Revision ID: 0004_audit_context
Revises: 0003_instance_lease
"""

from alembic import op
import sqlalchemy as sa


revision = '0004_audit_context'
down_revision = '0003_instance_lease'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # rows written before this revision keep NULL: where and how they were decided was never recorded
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('platform', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('workspace', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('channel', sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column('via', sa.String(length=16), nullable=True))
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('decided_via', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_column('decided_via')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_column('via')
        batch_op.drop_column('channel')
        batch_op.drop_column('workspace')
        batch_op.drop_column('platform')
