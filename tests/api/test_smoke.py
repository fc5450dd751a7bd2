from tests.api_client import Api


async def test_subscribed_account_reads_its_allowance(api: Api) -> None:
    account_id = await api.subscribed_account()
    balances = await api.balances(account_id)
    assert balances["creditsTotal"] == 1000
    run = await api.run(account_id)
    assert run["__typename"] == "GeneratorRun", run
    assert run["account"]["creditsTotal"] == 980
    bought = await api.buy(account_id)
    assert bought["__typename"] == "PackPurchased", bought
    assert bought["account"]["packBalance"] == 500
