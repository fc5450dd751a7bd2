"""A version on each account row, moved by every holder of the account's lock.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

A run on PostgreSQL may read the account's state without the lock and write its plan in one
autocommit statement that updates the account row only if its version is still the one read
(app/persistence/plans.py, the comment above ``_PG_WRITE``). That is sound only if no write to the
account's state can happen without the version moving: so every statement that takes the
account's lock moves it (the lock is ``UPDATE accounts SET version = version + 1``), and so
does every plan written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("version", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_column("accounts", "version")
