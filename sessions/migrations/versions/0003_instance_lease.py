"""instance lease and turn placeholder

Revision ID: 0003_instance_lease
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = '0003_instance_lease'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a replica's turns may be taken over only after its lease (renewed on each heartbeat) has expired
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
    # where the request's "working on it" placeholder is, so an interrupted turn's placeholder is replaced
    with op.batch_alter_table('turns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('placeholder', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('turns', schema=None) as batch_op:
        batch_op.drop_column('placeholder')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
