"""Seed the tariff table and credit packs; make ledger rows immutable.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TARIFFS = [
    ("TURBO", 20),
    ("PRO", 38),
    ("ULTRA", 80),
    ("STYLE_TRANSFER", 15),
    ("BACKGROUND_REMOVAL", 1),
]
PACKS = [
    ("pack-500", 500, 1000, "USD", 1),
    ("pack-1500", 1500, 2500, "USD", 2),
    ("pack-4000", 4000, 6000, "USD", 3),
]

tariffs = sa.table("tariffs", sa.column("tool", sa.String), sa.column("credits", sa.Integer))
packs = sa.table(
    "credit_packs",
    sa.column("id", sa.String),
    sa.column("credits", sa.Integer),
    sa.column("price_cents", sa.Integer),
    sa.column("currency", sa.String),
    sa.column("position", sa.Integer),
)

# The ledger is append-only: the database itself refuses to change or remove an entry.
POSTGRES_GUARDS = [
    """CREATE FUNCTION ledger_entries_immutable() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'ledger entries are immutable'; END;
       $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
       FOR EACH ROW EXECUTE FUNCTION ledger_entries_immutable()""",
]
SQLITE_GUARDS = [
    """CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
       BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END""",
    """CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
       BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END""",
]


def upgrade() -> None:
    op.bulk_insert(tariffs, [{"tool": t, "credits": c} for t, c in TARIFFS])
    op.bulk_insert(
        packs,
        [
            {"id": i, "credits": c, "price_cents": p, "currency": cur, "position": pos}
            for i, c, p, cur, pos in PACKS
        ],
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRES_GUARDS if postgres else SQLITE_GUARDS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ledger_entries_no_update ON ledger_entries")
        op.execute("DROP FUNCTION ledger_entries_immutable()")
    else:
        op.execute("DROP TRIGGER ledger_entries_no_update")
        op.execute("DROP TRIGGER ledger_entries_no_delete")
    op.execute(packs.delete())
    op.execute(tariffs.delete())
