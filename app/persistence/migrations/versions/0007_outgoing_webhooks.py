"""Outgoing webhooks: endpoints, the outbox of events, and one delivery per event and endpoint.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _at(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", _text(40), primary_key=True),
        sa.Column("url", _text(2048), nullable=False),
        sa.Column("description", _text(500), nullable=True),
        sa.Column("event_types", _text(1000), nullable=False, server_default=""),
        sa.Column("secret", _text(100), nullable=False),
        sa.Column("previous_secret", _text(100), nullable=True),
        _at("previous_secret_expires_at"),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        _at("disabled_at"),
        _at("failing_since"),
        _at("created_at", nullable=False),
        _at("updated_at", nullable=False),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", _text(40), primary_key=True),
        sa.Column("account_id", _text(36), nullable=False),
        sa.Column("event_type", _text(40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("ledger_entry_ids", sa.Text(), nullable=True),
        _at("created_at", nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", _text(40), sa.ForeignKey("webhook_events.id"), nullable=False),
        sa.Column("endpoint_id", _text(40), sa.ForeignKey("webhook_endpoints.id"), nullable=False),
        sa.Column("account_id", _text(36), nullable=False),
        sa.Column("event_type", _text(40), nullable=False),
        sa.Column("status", _text(16), nullable=False, server_default="PENDING"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        _at("next_attempt_at", nullable=False),
        _at("leased_until"),
        _at("last_attempt_at"),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", _text(500), nullable=True),
        _at("delivered_at"),
        _at("created_at", nullable=False),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_order", "webhook_deliveries", ["endpoint_id", "account_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_order", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_events")
    op.drop_table("webhook_endpoints")
