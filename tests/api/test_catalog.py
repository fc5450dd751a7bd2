"""The price lists are public: tariffs seeded by migration, plans, credit packs."""

from tests.api_client import Api
from tests.db import Rows

CATALOG = """
{ tariffs { tool credits } plans { plan monthlyCredits }
  creditPacks { id credits priceCents currency } }
"""


async def test_tariffs_are_seeded_by_migration_and_public(api: Api) -> None:
    # when
    data = await api.data(CATALOG)
    # then
    assert data["tariffs"] == [
        {"tool": "TURBO", "credits": 20},
        {"tool": "PRO", "credits": 38},
        {"tool": "ULTRA", "credits": 80},
        {"tool": "STYLE_TRANSFER", "credits": 15},
        {"tool": "BACKGROUND_REMOVAL", "credits": 1},
    ]


async def test_plans_show_their_configured_monthly_credits(api: Api) -> None:
    data = await api.data(CATALOG)
    assert data["plans"] == [
        {"plan": "STARTER", "monthlyCredits": 1000},
        {"plan": "PRO", "monthlyCredits": 4000},
    ]


async def test_credit_packs_are_listed_with_integer_prices(api: Api) -> None:
    data = await api.data(CATALOG)
    assert data["creditPacks"][0] == {
        "id": "pack-500",
        "credits": 500,
        "priceCents": 1000,
        "currency": "USD",
    }
    assert [p["credits"] for p in data["creditPacks"]] == [500, 1500, 4000]


async def test_the_tariff_charged_is_the_one_in_the_database(api: Api, rows: Rows) -> None:
    # given a tariff changed in the database (as an operator's migration would)
    await rows.execute("UPDATE tariffs SET credits = 25 WHERE tool = 'TURBO'")
    try:
        account_id = await api.subscribed_account()
        # when
        run = await api.run(account_id, "TURBO")
    finally:
        # PostgreSQL keeps one database for the session; leave the seeded price behind.
        await rows.execute("UPDATE tariffs SET credits = 20 WHERE tool = 'TURBO'")
    # then
    assert run["generation"]["cost"] == 25
    assert run["account"]["creditsTotal"] == 975
