"""A subscription may carry a downgrade scheduled for its next renewal.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch:
        batch.add_column(
            sa.Column("scheduled_plan", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch.add_column(sa.Column("scheduled_credits", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("scheduled_from", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch:
        batch.drop_column("scheduled_from")
        batch.drop_column("scheduled_credits")
        batch.drop_column("scheduled_plan")
