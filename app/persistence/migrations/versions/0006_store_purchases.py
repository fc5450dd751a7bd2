"""Packs sold in the App Store and Google Play: store product ids, quantities, finishing.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-01

Each pack gets the product id it has in each store (settings can override them); a store
purchase records how many packs it bought and when the store was told it was delivered
(Google's consume); a reversal records when the store reported it, so of two reports about
one refund the later one stands.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

STORE_PRODUCTS = [
    # pack id, App Store product id, Google Play product id
    ("pack-500", "com.creditgate.pack500", "pack_500"),
    ("pack-1500", "com.creditgate.pack1500", "pack_1500"),
    ("pack-4000", "com.creditgate.pack4000", "pack_4000"),
]


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("credit_packs", schema=None) as batch:
        batch.add_column(sa.Column("app_store_product_id", _text(255), nullable=True))
        batch.add_column(sa.Column("google_play_product_id", _text(255), nullable=True))
        batch.create_index("ux_credit_packs_app_store", ["app_store_product_id"], unique=True)
        batch.create_index("ux_credit_packs_google_play", ["google_play_product_id"], unique=True)
    packs = sa.table(
        "credit_packs",
        sa.column("id", sa.String),
        sa.column("app_store_product_id", sa.String),
        sa.column("google_play_product_id", sa.String),
    )
    for pack_id, apple, google in STORE_PRODUCTS:
        op.execute(
            packs.update()
            .where(packs.c.id == pack_id)
            .values(app_store_product_id=apple, google_play_product_id=google)
        )
    with op.batch_alter_table("pack_purchases", schema=None) as batch:
        batch.add_column(sa.Column("quantity", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("store_product_id", _text(255), nullable=True))
        batch.add_column(sa.Column("store_finished_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_pack_purchases_unfinished", ["provider", "store_finished_at"])
    with op.batch_alter_table("purchase_reversals", schema=None) as batch:
        batch.add_column(sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("purchase_reversals", schema=None) as batch:
        batch.drop_column("reported_at")
    with op.batch_alter_table("pack_purchases", schema=None) as batch:
        batch.drop_index("ix_pack_purchases_unfinished")
        batch.drop_column("store_finished_at")
        batch.drop_column("store_product_id")
        batch.drop_column("quantity")
    with op.batch_alter_table("credit_packs", schema=None) as batch:
        batch.drop_index("ux_credit_packs_google_play")
        batch.drop_index("ux_credit_packs_app_store")
        batch.drop_column("google_play_product_id")
        batch.drop_column("app_store_product_id")
