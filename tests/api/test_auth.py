"""Bearer JWTs: users act on their own account; service fields need a service token."""

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.api_client import CREATE_ACCOUNT, Api

ACCOUNT = "query($id: ID!) { account(id: $id) { id creditsTotal } }"
ACCOUNTS = "query($ids: [ID!]!) { accounts(ids: $ids) { id } }"


def codes(body: dict) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def test_protected_fields_without_a_token_are_unauthenticated(api: Api) -> None:
    body = await api.post("{ me { creditsTotal } }")
    assert codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] is None


async def test_public_fields_need_no_token(api: Api) -> None:
    assert (await api.data("{ tariffs { tool } }"))["tariffs"]


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", jwt.encode({"sub": "x", "role": "service", "exp": 2**40}, "wrong-secret-" * 3)],
    ids=["garbage", "forged"],
)
async def test_bad_tokens_are_unauthenticated(api: Api, token: str) -> None:
    assert codes(await api.post("{ me { id } }", token=token)) == ["UNAUTHENTICATED"]


async def test_an_unsigned_alg_none_token_is_refused(api: Api) -> None:
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    claims = jwt.utils.base64url_encode(b'{"sub":"x","role":"service","exp":9999999999}').decode()
    body = await api.post(ACCOUNTS, {"ids": []}, token=f"{header}.{claims}.")
    assert codes(body) == ["UNAUTHENTICATED"]


async def test_an_expired_token_is_unauthenticated(api: Api) -> None:
    account_id = await api.create_account()
    token = api.token(account_id, ttl=timedelta(minutes=5))
    api.clock.advance(timedelta(minutes=5))
    body = await api.post("{ me { id } }", token=token)
    assert body["errors"][0]["message"] == "The token has expired."


async def test_token_times_are_judged_by_the_servers_clock_not_the_wall_clock(
    api: Api,
) -> None:
    # given a server clock years ahead of the wall clock, and a token issued by it
    api.clock.set(datetime(2031, 6, 1, tzinfo=UTC))
    # when the token is used, then its issue time is not "in the future"
    assert (await api.as_service(CREATE_ACCOUNT, {"email": "later@example.com"}))["createAccount"]


async def test_a_user_reads_their_own_account_but_not_another(api: Api) -> None:
    alice = await api.subscribed_account()
    bob = await api.create_account()
    own = await api.as_user(alice, ACCOUNT, {"id": alice})
    assert own["account"]["creditsTotal"] == 1000
    assert codes(await api.post(ACCOUNT, {"id": bob}, token=api.token(alice))) == ["FORBIDDEN"]


async def test_a_service_token_reads_any_account(api: Api) -> None:
    alice = await api.subscribed_account()
    data = await api.as_service(ACCOUNT, {"id": alice})
    assert data["account"] == {"id": alice, "creditsTotal": 1000}
    assert (await api.as_service(ACCOUNT, {"id": "missing"}))["account"] is None


async def test_a_user_token_on_a_service_field_is_forbidden(api: Api) -> None:
    alice = await api.create_account()
    user = api.token(alice)
    assert codes(await api.post(ACCOUNTS, {"ids": [alice]}, token=user)) == ["FORBIDDEN"]
    body = await api.post(CREATE_ACCOUNT, {"email": "x@example.com"}, token=user)
    assert codes(body) == ["FORBIDDEN"]


async def test_accounts_returns_null_for_unknown_ids_in_order(api: Api) -> None:
    a = await api.create_account()
    b = await api.create_account()
    data = await api.as_service(ACCOUNTS, {"ids": [b, "nope", a]})
    assert data["accounts"] == [{"id": b}, None, {"id": a}]


async def test_accounts_caps_the_number_of_ids(api: Api) -> None:
    body = await api.post(ACCOUNTS, {"ids": [str(i) for i in range(101)]}, token=api.token())
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_a_user_cannot_spend_for_another_account(api: Api) -> None:
    alice = await api.subscribed_account()
    bob = await api.subscribed_account()
    body = await api.post(
        'mutation($id: ID!) { runGenerator(input: {tool: TURBO, idempotencyKey: "k",'
        " accountId: $id}) { __typename } }",
        {"id": bob},
        token=api.token(alice),
    )
    assert codes(body) == ["FORBIDDEN"]
    assert (await api.balances(bob))["creditsTotal"] == 1000


async def test_a_service_token_spends_for_the_account_it_names(api: Api) -> None:
    alice = await api.subscribed_account()
    data = await api.as_service(
        'mutation($id: ID!) { runGenerator(input: {tool: TURBO, idempotencyKey: "k",'
        " accountId: $id}) { ... on GeneratorRun { account { creditsTotal } } } }",
        {"id": alice},
    )
    assert data["runGenerator"]["account"]["creditsTotal"] == 980


async def test_duplicate_emails_are_a_conflict(api: Api) -> None:
    await api.create_account("Same@Example.com")
    body = await api.post(CREATE_ACCOUNT, {"email": "same@example.com"}, token=api.token())
    assert codes(body) == ["CONFLICT"]


async def test_a_malformed_email_is_bad_input(api: Api) -> None:
    body = await api.post(CREATE_ACCOUNT, {"email": "no-at-sign"}, token=api.token())
    assert codes(body) == ["BAD_USER_INPUT"]
