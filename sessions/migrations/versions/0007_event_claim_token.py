"""event claims carry the token of the call that took them, so a retried claim finds its own

Revision ID: 0007_event_claim_token
Revises: 0006_answer_feedback
"""

from alembic import op
import sqlalchemy as sa


revision = '0007_event_claim_token'
down_revision = '0006_answer_feedback'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('processed_events', sa.Column('claimed_by', sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column('processed_events', 'claimed_by')
