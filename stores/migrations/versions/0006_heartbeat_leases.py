"""Heartbeats carry the beating worker's lease, so a waiter with a shorter lease cannot call it dead.

A GPU worker with EMOFLOW_LEASE_SECONDS=300 beats every 100 s; a CPU worker waiting with 60 s would
have counted it dead between two beats. Beats from before this revision have none (the waiter's own
lease applies, as before).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("heartbeats") as table:
        table.add_column(sa.Column("lease_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("heartbeats") as table:
        table.drop_column("lease_seconds")
