from tests.api_client import Api

INVALID = "query { tariffs { nope } }"


async def test_an_invalid_query_is_refused_on_every_request(api: Api) -> None:
    for _ in range(2):
        body = await api.post(INVALID)
        assert body["data"] is None
        assert [e["message"] for e in body["errors"]] == [
            "Cannot query field 'nope' on type 'Tariff'."
        ]
