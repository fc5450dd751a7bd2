"""Pack purchases are paid before they are credited: a status, a provider, reversals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Existing purchases were credited at once: they become FULFILLED purchases of the sandbox.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("credit_packs", schema=None) as batch:
        batch.add_column(
            sa.Column("on_sale", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    with op.batch_alter_table("pack_purchases", schema=None) as batch:
        batch.add_column(sa.Column("status", _text(16), nullable=False, server_default="FULFILLED"))
        batch.add_column(sa.Column("provider", _text(16), nullable=False, server_default="SANDBOX"))
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("fulfilled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("checkout_session_id", _text(255), nullable=True))
        batch.add_column(sa.Column("checkout_url", _text(2048), nullable=True))
        batch.add_column(sa.Column("payment_reference", _text(255), nullable=True))
        batch.add_column(sa.Column("status_reason", _text(500), nullable=True))
        batch.add_column(
            sa.Column("refunded_cents", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("revocation_target", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("revoked_credits", sa.Integer(), nullable=False, server_default="0")
        )
        # A pending purchase has not been credited: no purchase instant, no expiry yet.
        batch.alter_column("purchased_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch.create_check_constraint(
            "ck_pack_purchases_revoked_nonneg", "revoked_credits >= 0 AND revocation_target >= 0"
        )
        batch.create_index(
            "ux_pack_purchases_session", ["provider", "checkout_session_id"], unique=True
        )
        batch.create_index(
            "ux_pack_purchases_payment", ["provider", "payment_reference"], unique=True
        )
        batch.create_index("ix_pack_purchases_status", ["status", "created_at"])
        batch.create_index("ix_pack_purchases_account", ["account_id", "created_at", "id"])
    op.execute("UPDATE pack_purchases SET created_at = purchased_at, fulfilled_at = purchased_at")
    with op.batch_alter_table("pack_purchases", schema=None) as batch:
        batch.alter_column("created_at", existing_type=sa.DateTime(timezone=True), nullable=False)

    # Ledger entries of reversals name the provider's refund or dispute id (up to 255).
    # SQLite does not enforce a VARCHAR's length, and a batch rebuild would drop the
    # ledger's immutability triggers: PostgreSQL alone widens the column.
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "ledger_entries",
            "reference_id",
            existing_type=sa.String(64),
            type_=sa.String(255),
            existing_nullable=True,
        )
    op.create_table(
        "payment_events",
        sa.Column("provider", _text(16), nullable=False),
        sa.Column("event_id", _text(255), nullable=False),
        sa.Column("event_type", _text(64), nullable=False),
        sa.Column("purchase_id", _text(36), nullable=True),
        sa.Column("outcome", _text(32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "event_id"),
    )
    op.create_table(
        "purchase_reversals",
        sa.Column("provider", _text(16), nullable=False),
        sa.Column("reversal_id", _text(255), nullable=False),
        sa.Column("purchase_id", _text(36), nullable=False),
        sa.Column("kind", _text(16), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("state", _text(16), nullable=False),
        sa.Column("credits_target", sa.Integer(), nullable=False),
        sa.Column("credits_revoked", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["purchase_id"], ["pack_purchases.id"]),
        sa.PrimaryKeyConstraint("provider", "reversal_id"),
    )
    with op.batch_alter_table("purchase_reversals", schema=None) as batch:
        batch.create_index("ix_purchase_reversals_purchase_id", ["purchase_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "ledger_entries",
            "reference_id",
            existing_type=sa.String(255),
            type_=sa.String(64),
            existing_nullable=True,
        )
    op.drop_table("purchase_reversals")
    op.drop_table("payment_events")
    with op.batch_alter_table("pack_purchases", schema=None) as batch:
        batch.drop_index("ix_pack_purchases_account")
        batch.drop_index("ix_pack_purchases_status")
        batch.drop_index("ux_pack_purchases_payment")
        batch.drop_index("ux_pack_purchases_session")
        batch.drop_constraint("ck_pack_purchases_revoked_nonneg", type_="check")
        for column in (
            "revoked_credits",
            "revocation_target",
            "refunded_cents",
            "status_reason",
            "payment_reference",
            "checkout_url",
            "checkout_session_id",
            "fulfilled_at",
            "created_at",
            "provider",
            "status",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("credit_packs", schema=None) as batch:
        batch.drop_column("on_sale")
