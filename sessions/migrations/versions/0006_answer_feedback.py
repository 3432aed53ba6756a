"""answer feedback: thumbs up / down on an answer, stored with its turn

Revision ID: 0006_answer_feedback
Revises: 0005_alert_groups
"""

from alembic import op
import sqlalchemy as sa


revision = '0006_answer_feedback'
down_revision = '0005_alert_groups'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'answer_feedback',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('turn_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.String(length=128), nullable=False),
        sa.Column('rating', sa.String(length=8), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['turn_id'], ['turns.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('turn_id', 'user_id', name='uq_feedback_turn_user'),
    )
    op.create_index('ix_answer_feedback_at', 'answer_feedback', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_answer_feedback_at', table_name='answer_feedback')
    op.drop_table('answer_feedback')
