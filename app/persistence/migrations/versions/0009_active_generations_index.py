"""An index of each account's runs in progress, so counting them reads only those.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

The per-plan cap counts an account's QUEUED and RUNNING generations inside every run's state
read. Without this index PostgreSQL intersected the account's generations with every queued
generation of every account (``ix_generations_queue``), which grew with any backlog of
queued runs: 1.4 ms a run at 25,000 queued (bench/README.md). A partial index on the
account, for the active statuses only, holds just the rows the count wants.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PREDICATE = "status IN ('QUEUED', 'RUNNING')"


def upgrade() -> None:
    op.create_index(
        "ix_generations_active",
        "generations",
        ["account_id"],
        postgresql_where=sa.text(PREDICATE),
        sqlite_where=sa.text(PREDICATE),
    )


def downgrade() -> None:
    op.drop_index("ix_generations_active", table_name="generations")
