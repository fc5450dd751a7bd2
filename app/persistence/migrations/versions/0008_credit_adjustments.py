"""Credit adjustments by support: a BONUS bucket, its lots, and the reason in the ledger.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

``accounts.bonus_balance`` and the two ledger columns are added in place (ALTER TABLE ADD
COLUMN on both backends): a batch rebuild of ``ledger_entries`` would drop its immutability
triggers, and one of ``accounts`` would have to drop a table others reference.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

# Numbered 0005 on its branch; after main's 0006 (store purchases) it follows that one.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.add_column(
            "accounts",
            sa.Column("bonus_balance", sa.Integer(), nullable=False, server_default="0"),
        )
        op.create_check_constraint("ck_accounts_bonus_nonneg", "accounts", "bonus_balance >= 0")
    else:
        # SQLite adds a column with its own CHECK in place.
        op.execute(
            "ALTER TABLE accounts ADD COLUMN bonus_balance INTEGER NOT NULL DEFAULT 0 "
            "CONSTRAINT ck_accounts_bonus_nonneg CHECK (bonus_balance >= 0)"
        )
    op.add_column("ledger_entries", sa.Column("reason", _text(500), nullable=True))
    op.add_column("ledger_entries", sa.Column("actor", _text(255), nullable=True))
    op.create_table(
        "credit_adjustments",
        sa.Column("id", _text(36), nullable=False),
        sa.Column("account_id", _text(36), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("reason", _text(500), nullable=False),
        sa.Column("actor", _text(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("remaining >= 0", name="ck_credit_adjustments_remaining_nonneg"),
        sa.CheckConstraint("amount <> 0", name="ck_credit_adjustments_amount_nonzero"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_credit_adjustments_live", "credit_adjustments", ["account_id", "expires_at"]
    )
    op.create_index("ix_credit_adjustments_expiry", "credit_adjustments", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_credit_adjustments_expiry", table_name="credit_adjustments")
    op.drop_index("ix_credit_adjustments_live", table_name="credit_adjustments")
    op.drop_table("credit_adjustments")
    # SQLite (3.35+) drops a column in place too; the triggers stay.
    op.execute("ALTER TABLE ledger_entries DROP COLUMN actor")
    op.execute("ALTER TABLE ledger_entries DROP COLUMN reason")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ck_accounts_bonus_nonneg", "accounts", type_="check")
    op.execute("ALTER TABLE accounts DROP COLUMN bonus_balance")
